// The generated uniffi bindings plus the idiomatic layer (XiuhuaRepository). A plain JVM
// module: the same code runs on a desktop JVM (tests) and on Android (through
// :xiuhua-android, which adds the native libraries and JNA's AAR).
//
// The bindings are generated at build time, in library mode, from the host build of the
// Rust library, into build/generated/uniffi (not committed).
import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    id("org.jetbrains.kotlin.jvm")
}

val repoRoot = rootDir.parentFile
val cargoTarget = System.getenv("CARGO_TARGET_DIR")?.let(::File) ?: File(repoRoot, "target")
val hostLib = File(
    cargoTarget,
    "debug/" + if (System.getProperty("os.name").startsWith("Mac")) "libxiuhua_ffi.dylib" else "libxiuhua_ffi.so",
)
val generatedDir = layout.buildDirectory.dir("generated/uniffi")

val buildHostLibrary by tasks.registering(Exec::class) {
    description = "Builds the Rust library for this machine (the bindings are generated from it)."
    workingDir = repoRoot
    commandLine("cargo", "build", "--locked", "-p", "xiuhua-ffi", "--lib", "--bin", "uniffi-bindgen")
}

val generateUniffiBindings by tasks.registering(Exec::class) {
    description = "Generates the Kotlin bindings in library mode."
    dependsOn(buildHostLibrary)
    workingDir = repoRoot
    inputs.file(hostLib)
    outputs.dir(generatedDir)
    commandLine(
        File(cargoTarget, "debug/uniffi-bindgen").path, "generate",
        "--library", hostLib.path, "--language", "kotlin",
        "--out-dir", generatedDir.get().asFile.path, "--no-format",
    )
}

kotlin {
    jvmToolchain(17)
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
    sourceSets["main"].kotlin.srcDir(generatedDir)
}

tasks.named("compileKotlin") { dependsOn(generateUniffiBindings) }

dependencies {
    // Android apps exclude this jar and use JNA's AAR instead (see :xiuhua-android).
    api("net.java.dev.jna:jna:5.15.0")
    api("org.jetbrains.kotlinx:kotlinx-coroutines-core:1.9.0")
}

// The tests are a main-based runner (no JUnit), as in scripts/kotlin-tests.sh.
val desktopTest by tasks.registering(JavaExec::class) {
    description = "Runs the Kotlin tests on this JVM against the real Rust library."
    group = "verification"
    dependsOn("testClasses")
    classpath = sourceSets["test"].runtimeClasspath
    mainClass.set("cn.xiuhua.TestRunnerKt")
    systemProperty("jna.library.path", File(cargoTarget, "debug").path)
    environment("XIUHUA_SERVER_BIN", File(cargoTarget, "debug/xiuhua-server").path)
}
tasks.named("check") { dependsOn(desktopTest) }
