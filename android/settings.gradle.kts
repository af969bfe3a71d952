// The Xiuhua Android build: the plain-JVM bindings module (tested on a desktop JVM by
// scripts/kotlin-tests.sh), the Android library that packages the native libraries (AAR),
// and the Compose app. Needs the Android SDK + NDK (not on the CI machine): open this folder
// in Android Studio, or run scripts/build-android.sh.
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

rootProject.name = "xiuhua"
include(":xiuhua-kotlin", ":xiuhua-android", ":app")
