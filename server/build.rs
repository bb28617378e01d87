//! `sqlx::migrate!` embeds the migration files at compile time but does not tell
//! cargo about them: without this, a new migration file would not trigger a rebuild.

fn main() {
    println!("cargo:rerun-if-changed=../migrations");
    println!("cargo:rerun-if-changed=migrations_sqlite");
}
