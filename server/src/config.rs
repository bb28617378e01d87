//! Server configuration: command-line flags, each with an environment variable.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crewsync_core::model::Role;

use crate::MAX_BODY_BYTES;
use crate::compaction::DEFAULT_COMPACT_AFTER;
use crate::limits::{
    DEFAULT_SIGN_IN_PER_ACCOUNT, DEFAULT_SIGN_IN_PER_DEVICE, DEFAULT_SIGN_IN_PER_IP,
    DEFAULT_SIGN_IN_PER_TENANT, DEFAULT_SYNC_PER_DEVICE, DEFAULT_SYNC_PER_TENANT, LimitConfig,
    RateLimit,
};
use crate::media;

/// Seconds between keep-alive pings on a live socket, unless configured.
pub const DEFAULT_LIVE_PING_SECS: u64 = 20;

#[derive(Debug, Clone, Parser)]
#[command(name = "crewsync-server", version, about = "The crewsync sync server")]
pub struct Config {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Address to listen on.
    #[arg(long, env = "CREWSYNC_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Storage: `postgres://…` for Postgres, `sqlite://PATH` for an SQLite file;
    /// absent, an embedded SQLite file in the data dir. Falls back to DATABASE_URL.
    #[arg(
        long,
        env = "CREWSYNC_DATABASE_URL",
        hide_env_values = true,
        global = true
    )]
    pub database_url: Option<String>,

    /// Where the embedded SQLite store lives (when no database URL is given).
    #[arg(
        long,
        env = "CREWSYNC_DATA_DIR",
        default_value = "./crewsync-data",
        global = true
    )]
    pub data_dir: PathBuf,

    /// Largest sync request body accepted; larger ones get 413.
    #[arg(long, env = "CREWSYNC_MAX_BODY_BYTES", default_value_t = MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Seconds between keep-alive pings on live sockets; a socket silent for two
    /// intervals is closed.
    #[arg(long, env = "CREWSYNC_LIVE_PING_SECS", default_value_t = DEFAULT_LIVE_PING_SECS,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub live_ping_secs: u64,

    /// Compact a journey (fold its logged changes into a saved document) once this
    /// many of its changes are outside its snapshot; 0 turns compaction off.
    #[arg(long, env = "CREWSYNC_COMPACT_AFTER", default_value_t = DEFAULT_COMPACT_AFTER)]
    pub compact_after: u64,

    /// Don't load the demo tenants into an empty embedded store at start.
    #[arg(long, env = "CREWSYNC_NO_DEMO_SEED")]
    pub no_demo_seed: bool,

    /// Drivers' and movers' devices keep the journeys they are on from this many
    /// days back …
    #[arg(long, env = "CREWSYNC_SCOPE_DAYS_BACK", default_value_t = crate::scope::Window::default().days_back)]
    pub scope_days_back: u32,

    /// … to this many days ahead (sync scopes; see ARCHITECTURE.md).
    #[arg(long, env = "CREWSYNC_SCOPE_DAYS_AHEAD", default_value_t = crate::scope::Window::default().days_ahead)]
    pub scope_days_ahead: u32,

    /// Sign-in attempts per client IP (`N/s`, `N/min` or `N/h`); past it, 429.
    #[arg(long, env = "CREWSYNC_SIGN_IN_LIMIT_PER_IP", default_value_t = DEFAULT_SIGN_IN_PER_IP)]
    pub sign_in_limit_per_ip: RateLimit,

    /// Sign-in attempts per account (email).
    #[arg(long, env = "CREWSYNC_SIGN_IN_LIMIT_PER_ACCOUNT", default_value_t = DEFAULT_SIGN_IN_PER_ACCOUNT)]
    pub sign_in_limit_per_account: RateLimit,

    /// Sign-in attempts per device.
    #[arg(long, env = "CREWSYNC_SIGN_IN_LIMIT_PER_DEVICE", default_value_t = DEFAULT_SIGN_IN_PER_DEVICE)]
    pub sign_in_limit_per_device: RateLimit,

    /// Sign-in attempts per tenant.
    #[arg(long, env = "CREWSYNC_SIGN_IN_LIMIT_PER_TENANT", default_value_t = DEFAULT_SIGN_IN_PER_TENANT)]
    pub sign_in_limit_per_tenant: RateLimit,

    /// Sync requests and live upgrades per device.
    #[arg(long, env = "CREWSYNC_SYNC_LIMIT_PER_DEVICE", default_value_t = DEFAULT_SYNC_PER_DEVICE)]
    pub sync_limit_per_device: RateLimit,

    /// Sync requests and live upgrades per tenant.
    #[arg(long, env = "CREWSYNC_SYNC_LIMIT_PER_TENANT", default_value_t = DEFAULT_SYNC_PER_TENANT)]
    pub sync_limit_per_tenant: RateLimit,

    #[command(flatten)]
    pub media: MediaFlags,
}

/// Media storage and limits (issue 5).
#[derive(Debug, Clone, clap::Args)]
pub struct MediaFlags {
    /// Largest signature PNG, in bytes.
    #[arg(long = "media-max-signature-bytes", env = "CREWSYNC_MEDIA_MAX_SIGNATURE_BYTES", default_value_t = media::DEFAULT_MAX_SIGNATURE)]
    pub max_signature_bytes: u64,
    /// Largest device thumbnail, in bytes.
    #[arg(long = "media-max-thumbnail-bytes", env = "CREWSYNC_MEDIA_MAX_THUMBNAIL_BYTES", default_value_t = media::DEFAULT_MAX_THUMBNAIL)]
    pub max_thumbnail_bytes: u64,
    /// Largest photo, in bytes.
    #[arg(long = "media-max-photo-bytes", env = "CREWSYNC_MEDIA_MAX_PHOTO_BYTES", default_value_t = media::DEFAULT_MAX_PHOTO)]
    pub max_photo_bytes: u64,
    /// Largest video, in bytes.
    #[arg(long = "media-max-video-bytes", env = "CREWSYNC_MEDIA_MAX_VIDEO_BYTES", default_value_t = media::DEFAULT_MAX_VIDEO)]
    pub max_video_bytes: u64,
    /// Largest chunk of one upload PATCH, in bytes; larger ones get 413.
    #[arg(long = "media-max-chunk-bytes", env = "CREWSYNC_MEDIA_MAX_CHUNK_BYTES", default_value_t = media::DEFAULT_MAX_CHUNK,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub max_chunk_bytes: u64,
    /// Seconds after its last chunk an unfinished upload expires (its bytes removed).
    #[arg(long = "media-upload-expiry-secs", env = "CREWSYNC_MEDIA_UPLOAD_EXPIRY_SECS", default_value_t = media::DEFAULT_UPLOAD_EXPIRY.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..))]
    pub upload_expiry_secs: u64,
    /// Largest image width or height the server decodes; larger ones are refused.
    #[arg(long = "media-max-image-side", env = "CREWSYNC_MEDIA_MAX_IMAGE_SIDE", default_value_t = media::images::DEFAULT_MAX_SIDE)]
    pub max_image_side: u32,
    /// Store media in this S3-compatible bucket instead of the data dir (needs a
    /// server built with the `s3` feature).
    #[arg(long = "media-s3-bucket", env = "CREWSYNC_MEDIA_S3_BUCKET")]
    pub s3_bucket: Option<String>,
    #[arg(long = "media-s3-region", env = "CREWSYNC_MEDIA_S3_REGION")]
    pub s3_region: Option<String>,
    /// e.g. `http://127.0.0.1:9000` for MinIO; absent for AWS.
    #[arg(long = "media-s3-endpoint", env = "CREWSYNC_MEDIA_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(
        long = "media-s3-access-key-id",
        env = "CREWSYNC_MEDIA_S3_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub s3_access_key_id: Option<String>,
    #[arg(
        long = "media-s3-secret-access-key",
        env = "CREWSYNC_MEDIA_S3_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub s3_secret_access_key: Option<String>,
}

impl Default for MediaFlags {
    fn default() -> Self {
        Self {
            max_signature_bytes: media::DEFAULT_MAX_SIGNATURE,
            max_thumbnail_bytes: media::DEFAULT_MAX_THUMBNAIL,
            max_photo_bytes: media::DEFAULT_MAX_PHOTO,
            max_video_bytes: media::DEFAULT_MAX_VIDEO,
            max_chunk_bytes: media::DEFAULT_MAX_CHUNK,
            upload_expiry_secs: media::DEFAULT_UPLOAD_EXPIRY.as_secs(),
            max_image_side: media::images::DEFAULT_MAX_SIDE,
            s3_bucket: None,
            s3_region: None,
            s3_endpoint: None,
            s3_access_key_id: None,
            s3_secret_access_key: None,
        }
    }
}

/// What to do instead of serving.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Loads the seed's demo tenants (LGM: 43 locations, 50 users; and a second,
    /// small tenant) into the configured database, then exits. Idempotent.
    Seed,
    /// Manages a tenant's users without a token (for operators), then exits.
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
    /// Media housekeeping (purge past retention, sweep abandoned uploads), then exits.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
}

/// `crewsync-server user …`: the admin API's user operations for operators.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum UserCommand {
    /// Adds an active user. The password comes from CREWSYNC_USER_PASSWORD (or
    /// --password, which other local users can see in the process list).
    Add {
        /// The tenant's slug (e.g. `lgm`) or id.
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
        #[arg(long)]
        name: String,
        /// ADMIN, DISPATCHER, DRIVER, MOVER, MANAGER or AUDITOR.
        #[arg(long, value_parser = parse_role)]
        role: Role,
        /// The location's name (e.g. HAMILTON) or id.
        #[arg(long)]
        location: String,
        #[arg(long, env = "CREWSYNC_USER_PASSWORD", hide_env_values = true)]
        password: String,
    },
    /// Deactivates a user and ends all their sessions: their devices are refused
    /// at their next contact.
    Deactivate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
    },
    /// Lets a deactivated user sign in again.
    Reactivate {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        email: String,
    },
    /// Lists the tenant's users.
    List {
        #[arg(long)]
        tenant: String,
    },
}

/// `crewsync-server media …`: media housekeeping for operators (cron).
#[derive(Debug, Clone, clap::Subcommand)]
pub enum MediaCommand {
    /// Deletes originals stored longer ago than their tenant's
    /// `media_retention_days`, except on journeys under legal hold (rows and
    /// thumbnails stay; each purge is audited).
    Purge,
    /// Removes unfinished uploads past the expiry and their partial bytes.
    Sweep,
}

fn parse_role(text: &str) -> Result<Role, String> {
    text.trim().to_uppercase().parse().map_err(|_| {
        format!("unknown role {text:?}: one of ADMIN, DISPATCHER, DRIVER, MOVER, MANAGER, AUDITOR")
    })
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: None,
            data_dir: PathBuf::from("./crewsync-data"),
            max_body_bytes: MAX_BODY_BYTES,
            live_ping_secs: DEFAULT_LIVE_PING_SECS,
            compact_after: DEFAULT_COMPACT_AFTER,
            command: None,
            no_demo_seed: false,
            scope_days_back: crate::scope::Window::default().days_back,
            scope_days_ahead: crate::scope::Window::default().days_ahead,
            sign_in_limit_per_ip: DEFAULT_SIGN_IN_PER_IP,
            sign_in_limit_per_account: DEFAULT_SIGN_IN_PER_ACCOUNT,
            sign_in_limit_per_device: DEFAULT_SIGN_IN_PER_DEVICE,
            sign_in_limit_per_tenant: DEFAULT_SIGN_IN_PER_TENANT,
            sync_limit_per_device: DEFAULT_SYNC_PER_DEVICE,
            sync_limit_per_tenant: DEFAULT_SYNC_PER_TENANT,
            media: MediaFlags::default(),
        }
    }
}

impl Config {
    /// Flags and environment, with `DATABASE_URL` as the fallback database URL.
    pub fn from_args_and_env() -> Self {
        let mut config = Self::parse();
        if config.database_url.is_none() {
            config.database_url = std::env::var("DATABASE_URL")
                .ok()
                .filter(|url| !url.is_empty());
        }
        config
    }

    /// The date window of crew members' sync scopes.
    pub fn scope_window(&self) -> crate::scope::Window {
        crate::scope::Window {
            days_back: self.scope_days_back,
            days_ahead: self.scope_days_ahead,
        }
    }

    /// The rate limits the flags set.
    pub fn limits(&self) -> LimitConfig {
        LimitConfig {
            sign_in_per_ip: self.sign_in_limit_per_ip,
            sign_in_per_account: self.sign_in_limit_per_account,
            sign_in_per_device: self.sign_in_limit_per_device,
            sign_in_per_tenant: self.sign_in_limit_per_tenant,
            sync_per_device: self.sync_limit_per_device,
            sync_per_tenant: self.sync_limit_per_tenant,
        }
    }

    /// The media store's configuration.
    pub fn media_config(&self) -> media::MediaConfig {
        let flags = &self.media;
        media::MediaConfig {
            data_dir: self.data_dir.clone(),
            max_signature: flags.max_signature_bytes,
            max_thumbnail: flags.max_thumbnail_bytes,
            max_photo: flags.max_photo_bytes,
            max_video: flags.max_video_bytes,
            max_chunk: flags.max_chunk_bytes.max(1),
            upload_expiry: Duration::from_secs(flags.upload_expiry_secs.max(1)),
            max_image_side: flags.max_image_side,
            blobs: match &flags.s3_bucket {
                Some(bucket) => media::blobs::BlobConfig::S3 {
                    bucket: bucket.clone(),
                    region: flags.s3_region.clone(),
                    endpoint: flags.s3_endpoint.clone(),
                    access_key_id: flags.s3_access_key_id.clone(),
                    secret_access_key: flags.s3_secret_access_key.clone(),
                },
                None => media::blobs::BlobConfig::Local,
            },
        }
    }

    pub fn live_ping(&self) -> Duration {
        Duration::from_secs(self.live_ping_secs.max(1))
    }

    /// Which backend the database URL selects, for logs (never the URL: it may hold
    /// a password).
    pub fn backend_name(&self) -> &'static str {
        match self.database_url.as_deref() {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                "postgres"
            }
            Some(url) if url.starts_with("sqlite:") => "sqlite",
            Some(_) => "unknown",
            None => "embedded sqlite",
        }
    }

    /// Whether the storage is Postgres, so other server processes may share it.
    pub fn is_postgres(&self) -> bool {
        self.backend_name() == "postgres"
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn flags_parse() {
        let config = Config::try_parse_from([
            "crewsync-server",
            "--listen",
            "0.0.0.0:9000",
            "--database-url",
            "postgres://u@h/db",
            "--data-dir",
            "/tmp/x",
            "--max-body-bytes",
            "1024",
            "--live-ping-secs",
            "5",
            "--compact-after",
            "64",
            "--sync-limit-per-device",
            "30/s",
        ])
        .unwrap();
        assert_eq!(config.limits().sync_per_device.to_string(), "30/s");
        assert_eq!(
            Config::try_parse_from(["crewsync-server"])
                .unwrap()
                .limits(),
            Config::default().limits(),
            "clap's defaults and Default agree"
        );
        assert!(
            Config::try_parse_from(["crewsync-server", "--sign-in-limit-per-ip", "0/min"]).is_err()
        );
        let add = Config::try_parse_from([
            "crewsync-server",
            "user",
            "add",
            "--tenant",
            "lgm",
            "--email",
            "a@b.example",
            "--name",
            "A",
            "--role",
            "driver",
            "--location",
            "HAMILTON",
            "--password",
            "long enough",
        ])
        .unwrap();
        assert!(matches!(
            add.command,
            Some(Command::User {
                command: UserCommand::Add {
                    role: Role::Driver,
                    ..
                }
            })
        ));
        assert!(
            Config::try_parse_from([
                "crewsync-server",
                "user",
                "add",
                "--tenant",
                "lgm",
                "--email",
                "a@b",
                "--name",
                "A",
                "--role",
                "BOSS",
                "--location",
                "X",
                "--password",
                "p",
            ])
            .is_err()
        );
        assert_eq!(config.listen.port(), 9000);
        assert!(config.is_postgres());
        assert_eq!(config.max_body_bytes, 1024);
        assert_eq!(config.live_ping(), Duration::from_secs(5));
        assert_eq!(config.compact_after, 64);
        assert!(config.command.is_none());
        let seed =
            Config::try_parse_from(["crewsync-server", "seed", "--data-dir", "/tmp/y"]).unwrap();
        assert!(matches!(seed.command, Some(Command::Seed)));
        assert_eq!(seed.data_dir, PathBuf::from("/tmp/y"));
        assert!(Config::try_parse_from(["crewsync-server", "--live-ping-secs", "0"]).is_err());
        assert_eq!(Config::default().backend_name(), "embedded sqlite");
    }
}
