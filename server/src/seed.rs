//! Demo data from the seed (`../shared/seed/`): the LGM tenant — 43 locations,
//! corporate and franchise, 50 users in the seed's role mix — and a second, small
//! tenant that exists to prove isolation.
//!
//! Ids are derived from names (UUIDv5), so seeding twice updates rather than
//! duplicates. What the seed gives is used as given (names, corporate contacts,
//! trucks and storage, totals); what it leaves open is filled in and marked here:
//! which franchises have lockers or PODs and customer care (chosen to match the
//! seed's totals: LOCKER 14, POD 9, none 20; customer care 34 of 43), franchise
//! truck counts (2), timezones (from each city), user names and emails.

use crewsync_core::ids::{ClientId, LocationId, MoveSourceId, UserId};
use crewsync_core::model::Role;
use crewsync_core::policy::PermissionTable;
use uuid::Uuid;

use crate::auth::password;
use crate::directory::{
    Directory, DirectoryError, LocationRecord, MoveSourceRecord, StorageType, TenantRecord,
    UserRecord, UserStatus,
};

/// Every demo user's password (documented in the README; demo data only).
pub const DEMO_PASSWORD: &str = "crewsync-demo";

/// The LGM client id from the seed (`clm_f55e13de_a5c4_4990_ad02_34bb07187daa`).
pub const LGM_TENANT: Uuid = Uuid::from_u128(0xf55e13de_a5c4_4990_ad02_34bb07187daa);

/// Where every derived id comes from.
const NAMESPACE: Uuid = Uuid::from_u128(0x6f3c_2d1e_9a4b_4c5d_8e7f_0a1b_2c3d_4e5f);

/// The corporate locations as the seed lists them: name, contact, trucks, storage.
const CORPORATE: [(&str, &str, u32, StorageType, &str); 8] = [
    (
        "BURNABY",
        "SHAHBAZ",
        5,
        StorageType::Pod,
        "America/Vancouver",
    ),
    (
        "DOWNTOWN TORONTO",
        "ARSHDEEP",
        6,
        StorageType::Pod,
        "America/Toronto",
    ),
    (
        "EDMONTON",
        "DANYLO",
        4,
        StorageType::Locker,
        "America/Edmonton",
    ),
    ("HAMILTON", "HAKAM", 5, StorageType::Pod, "America/Toronto"),
    (
        "MISSISSAUGA",
        "ARSHDEEP",
        3,
        StorageType::Pod,
        "America/Toronto",
    ),
    (
        "MONTREAL",
        "BHANU",
        4,
        StorageType::Locker,
        "America/Toronto",
    ),
    (
        "NORTH YORK (TORONTO)",
        "ANKIT/ARSHDEEP",
        7,
        StorageType::Pod,
        "America/Toronto",
    ),
    (
        "VANCOUVER",
        "RASOUL",
        11,
        StorageType::Pod,
        "America/Vancouver",
    ),
];

/// The 35 franchise locations (the seed lists MONTREAL under both; it is one
/// location, the corporate one) with their timezones.
const FRANCHISES: [(&str, &str); 35] = [
    ("ABBOTSFORD", "America/Vancouver"),
    ("COQUITLAM", "America/Vancouver"),
    ("KELOWNA", "America/Vancouver"),
    ("RICHMOND", "America/Vancouver"),
    ("SURREY", "America/Vancouver"),
    ("VICTORIA", "America/Vancouver"),
    ("CALGARY", "America/Edmonton"),
    ("LETHBRIDGE", "America/Edmonton"),
    ("REGINA", "America/Regina"),
    ("SASKATOON", "America/Regina"),
    ("WINNIPEG", "America/Winnipeg"),
    ("AJAX", "America/Toronto"),
    ("AURORA", "America/Toronto"),
    ("BARRIE", "America/Toronto"),
    ("BRAMPTON", "America/Toronto"),
    ("MARKHAM", "America/Toronto"),
    ("MILTON", "America/Toronto"),
    ("OAKVILLE", "America/Toronto"),
    ("OSHAWA", "America/Toronto"),
    ("SCARBOROUGH", "America/Toronto"),
    ("VAUGHAN", "America/Toronto"),
    ("BRANTFORD", "America/Toronto"),
    ("BURLINGTON", "America/Toronto"),
    ("KINGSTON", "America/Toronto"),
    ("LONDON", "America/Toronto"),
    ("OTTAWA", "America/Toronto"),
    ("PETERBOROUGH", "America/Toronto"),
    ("ST CATHERINES", "America/Toronto"),
    ("WATERLOO", "America/Toronto"),
    ("WINDSOR", "America/Toronto"),
    ("WOODSTOCK", "America/Toronto"),
    ("FREDERICTON", "America/Moncton"),
    ("MONCTON", "America/Moncton"),
    ("SAINT JOHN", "America/Moncton"),
    ("HALIFAX", "America/Halifax"),
];

/// Where the one DRIVER, DISPATCHER, MOVER and AUDITOR of the seed work.
pub const CREW_HOME: &str = "HAMILTON";

/// A deterministic id for `kind` named `name` in `tenant`.
pub fn derived_id(tenant: Uuid, kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, format!("{tenant}/{kind}/{name}").as_bytes())
}

/// A name as an email local part: `NORTH YORK (TORONTO)` → `north-york-toronto`.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_owned()
}

/// A demo user to create.
#[derive(Debug, Clone)]
pub struct DemoUser {
    pub email: String,
    pub name: String,
    pub role: Role,
    pub location: String,
}

/// What a seeding did, for the command's report.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Seeded {
    pub tenants: usize,
    pub locations: usize,
    pub users: usize,
}

/// The seed's tenants: LGM and the isolation tenant.
pub fn demo_tenants() -> Vec<(TenantRecord, Vec<LocationRecord>, Vec<DemoUser>)> {
    vec![lgm(), maple()]
}

fn lgm() -> (TenantRecord, Vec<LocationRecord>, Vec<DemoUser>) {
    let tenant = ClientId::from_uuid(LGM_TENANT);
    let record = TenantRecord {
        id: tenant,
        slug: "lgm".into(),
        name: "LGM (Let's Get Moving)".into(),
        industry: Some("Moving & Logistics".into()),
        is_franchise: false,
        settings: serde_json::json!({ "currency": "CAD" }),
    };
    let mut locations: Vec<LocationRecord> = CORPORATE
        .iter()
        .map(
            |&(name, contact, trucks, storage, timezone)| LocationRecord {
                id: LocationId::from_uuid(derived_id(LGM_TENANT, "location", name)),
                tenant,
                name: name.into(),
                timezone: timezone.into(),
                address: None,
                is_corporate: true,
                storage_type: storage,
                customer_care: true,
                trucks,
                contact: Some(contact.into()),
            },
        )
        .collect();
    for (i, &(name, timezone)) in FRANCHISES.iter().enumerate() {
        // Filled in to match the seed's totals: 12 franchise lockers and 3 PODs
        // (with the corporate 2 and 6: 14 and 9), customer care off at 9.
        let storage_type = match i {
            0..12 => StorageType::Locker,
            12..15 => StorageType::Pod,
            _ => StorageType::None,
        };
        locations.push(LocationRecord {
            id: LocationId::from_uuid(derived_id(LGM_TENANT, "location", name)),
            tenant,
            name: name.into(),
            timezone: timezone.into(),
            address: None,
            is_corporate: false,
            storage_type,
            customer_care: !(i % 4 == 3 || i == 34),
            trucks: 2,
            contact: None,
        });
    }

    let email = |local: &str| format!("{local}@lgm.example");
    let mut users = vec![
        crew(&email("driver"), "Dev Driver", Role::Driver),
        crew(&email("dispatcher"), "Dana Dispatcher", Role::Dispatcher),
        crew(&email("mover"), "Max Mover", Role::Mover),
        crew(&email("auditor"), "Alex Auditor", Role::Auditor),
    ];
    // Seven managers: the corporate locations but Mississauga (run from Downtown).
    for &(name, contact, ..) in CORPORATE.iter().filter(|c| c.0 != "MISSISSAUGA") {
        users.push(DemoUser {
            email: email(&format!("manager.{}", slug(name))),
            name: format!("{contact} (manager, {name})"),
            role: Role::Manager,
            location: name.into(),
        });
    }
    // Thirty-nine admins: one per location, in seed order, until there are 39.
    for location in locations.iter().take(39) {
        users.push(DemoUser {
            email: email(&format!("admin.{}", slug(&location.name))),
            name: format!("Admin, {}", location.name),
            role: Role::Admin,
            location: location.name.clone(),
        });
    }
    (record, locations, users)
}

fn crew(email: &str, name: &str, role: Role) -> DemoUser {
    DemoUser {
        email: email.into(),
        name: name.into(),
        role,
        location: CREW_HOME.into(),
    }
}

/// A second moving company: two locations, one user per role.
fn maple() -> (TenantRecord, Vec<LocationRecord>, Vec<DemoUser>) {
    let id = derived_id(Uuid::nil(), "tenant", "maple");
    let tenant = ClientId::from_uuid(id);
    let record = TenantRecord {
        id: tenant,
        slug: "maple".into(),
        name: "Maple Leaf Movers".into(),
        industry: Some("Moving & Logistics".into()),
        is_franchise: true,
        settings: serde_json::json!({ "currency": "CAD" }),
    };
    let locations = [
        ("GUELPH", "America/Toronto"),
        ("SUDBURY", "America/Toronto"),
    ]
    .iter()
    .map(|&(name, timezone)| LocationRecord {
        id: LocationId::from_uuid(derived_id(id, "location", name)),
        tenant,
        name: name.into(),
        timezone: timezone.into(),
        address: None,
        is_corporate: false,
        storage_type: StorageType::None,
        customer_care: false,
        trucks: 1,
        contact: None,
    })
    .collect();
    let users = [
        Role::Admin,
        Role::Dispatcher,
        Role::Driver,
        Role::Mover,
        Role::Manager,
        Role::Auditor,
    ]
    .iter()
    .map(|role| {
        let local = role.to_string().to_lowercase();
        DemoUser {
            email: format!("{local}@maple.example"),
            name: format!("Maple {local}"),
            role: *role,
            location: "GUELPH".into(),
        }
    })
    .collect();
    (record, locations, users)
}

/// Loads the demo tenants into `directory` (idempotent: ids are derived from
/// names). Every user gets [`DEMO_PASSWORD`]; `hash_password` is the costly part
/// (argon2), so callers may run this off the async workers.
pub async fn seed(directory: &Directory) -> Result<Seeded, SeedError> {
    let mut seeded = Seeded::default();
    for (tenant, locations, users) in demo_tenants() {
        directory.upsert_tenant(&tenant).await?;
        directory
            .set_permissions(tenant.id, &PermissionTable::defaults().rows())
            .await?;
        directory
            .upsert_move_source(&MoveSourceRecord {
                id: MoveSourceId::from_uuid(derived_id(tenant.id.as_uuid(), "move_source", "web")),
                tenant: tenant.id,
                name: "Website".into(),
                description: Some("Quote requests from the web form".into()),
                is_active: true,
            })
            .await?;
        for location in &locations {
            directory.upsert_location(location).await?;
        }
        for user in &users {
            let location = locations
                .iter()
                .find(|l| l.name == user.location)
                .ok_or_else(|| SeedError::Data(format!("no location {}", user.location)))?;
            let password_hash = tokio::task::spawn_blocking(|| password::hash(DEMO_PASSWORD))
                .await
                .map_err(|e| SeedError::Data(e.to_string()))??;
            directory
                .upsert_user(&UserRecord {
                    id: UserId::from_uuid(derived_id(tenant.id.as_uuid(), "user", &user.email)),
                    tenant: tenant.id,
                    location_id: location.id,
                    name: user.name.clone(),
                    email: user.email.clone(),
                    role: user.role,
                    status: UserStatus::Active,
                    password_hash: Some(password_hash),
                })
                .await?;
        }
        seeded.tenants += 1;
        seeded.locations += locations.len();
        seeded.users += users.len();
    }
    Ok(seeded)
}

#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error(transparent)]
    Password(#[from] password::PasswordError),
    #[error("seed data: {0}")]
    Data(String),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn lgm_matches_the_seed_figures() {
        let (tenant, locations, users) = lgm();
        assert_eq!(
            tenant.id.to_string(),
            "f55e13de-a5c4-4990-ad02-34bb07187daa"
        );
        assert_eq!(locations.len(), 43);
        assert_eq!(locations.iter().filter(|l| l.is_corporate).count(), 8);
        let storage = |kind| locations.iter().filter(|l| l.storage_type == kind).count();
        assert_eq!(storage(StorageType::Locker), 14);
        assert_eq!(storage(StorageType::Pod), 9);
        assert_eq!(storage(StorageType::None), 20);
        assert_eq!(locations.iter().filter(|l| l.customer_care).count(), 34);
        let names: std::collections::HashSet<_> = locations.iter().map(|l| &l.name).collect();
        assert_eq!(names.len(), 43, "location names are unique");
        for location in &locations {
            assert!(
                location.timezone.parse::<chrono_tz::Tz>().is_ok(),
                "{}",
                location.timezone
            );
        }

        assert_eq!(users.len(), 50);
        let mut roles: HashMap<Role, usize> = HashMap::new();
        for user in &users {
            *roles.entry(user.role).or_default() += 1;
        }
        assert_eq!(roles[&Role::Admin], 39);
        assert_eq!(roles[&Role::Manager], 7);
        for role in [Role::Driver, Role::Dispatcher, Role::Mover, Role::Auditor] {
            assert_eq!(roles[&role], 1, "{role}");
        }
        let emails: std::collections::HashSet<_> = users.iter().map(|u| &u.email).collect();
        assert_eq!(emails.len(), 50);
    }

    #[test]
    fn slugs_are_email_safe() {
        assert_eq!(slug("NORTH YORK (TORONTO)"), "north-york-toronto");
        assert_eq!(slug("ST CATHERINES"), "st-catherines");
    }
}
