// The app module. Its Kotlin sources are the Compose screens (src/main/kotlin), the
// shared state holders the JVM test also compiles (../shared), and the generated
// bindings (scripts/bindgen writes them; README.md). The native library comes from
// cargo-ndk into src/main/jniLibs/<abi>/libcrewsync_ffi.so.
plugins {
    id("com.android.application")
    id("org.jetbrains.kotlin.android")
    id("org.jetbrains.kotlin.plugin.compose")
}

android {
    namespace = "crewsync.demo.app"
    compileSdk = 35

    defaultConfig {
        applicationId = "crewsync.demo.app"
        minSdk = 26
        targetSdk = 35
        versionCode = 1
        versionName = "0.1"
        // The server the crew syncs with; 10.0.2.2 is the host seen from the emulator.
        buildConfigField("String", "SERVER_URL", "\"http://10.0.2.2:8080\"")
        ndk {
            abiFilters += listOf("arm64-v8a", "armeabi-v7a", "x86_64")
        }
    }

    buildFeatures {
        compose = true
        buildConfig = true
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    kotlinOptions {
        jvmTarget = "17"
    }

    sourceSets["main"].kotlin.srcDirs(
        "src/main/kotlin",
        "../shared/src/main/kotlin",
        // scripts/bindgen's output; override with -PcrewsyncBindings=/path/to/kotlin
        (findProperty("crewsyncBindings") as String?) ?: "../../target/bindings/kotlin",
    )
}

dependencies {
    val composeBom = platform("androidx.compose:compose-bom:2024.12.01")
    implementation(composeBom)
    implementation("androidx.compose.ui:ui")
    implementation("androidx.compose.material3:material3")
    implementation("androidx.compose.ui:ui-tooling-preview")
    implementation("androidx.activity:activity-compose:1.9.3")
    implementation("androidx.lifecycle:lifecycle-runtime-compose:2.8.7")
    implementation("androidx.lifecycle:lifecycle-viewmodel-compose:2.8.7")
    implementation("androidx.navigation:navigation-compose:2.8.5")
    implementation("androidx.work:work-runtime-ktx:2.10.0")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.9.0")
    // The uniffi Kotlin bindings call the library through JNA (the AAR carries its
    // native part for each ABI).
    implementation("net.java.dev.jna:jna:5.15.0@aar")
    debugImplementation("androidx.compose.ui:ui-tooling")
}
