// The crewsync crew app for Android. Open this folder in Android Studio; see README.md
// for building the native library (cargo-ndk) and generating the Kotlin bindings first.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "crewsync-demo"
include(":app")
