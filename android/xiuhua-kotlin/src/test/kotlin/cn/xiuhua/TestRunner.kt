package cn.xiuhua

import kotlin.system.exitProcess

/** A tiny test runner (no JUnit download): runs named tests, prints a summary, exits 1 on failure. */
class TestFailure(message: String) : AssertionError(message)

fun check(condition: Boolean, message: () -> String) {
    if (!condition) throw TestFailure(message())
}

fun <T> checkEq(expected: T, actual: T, what: String) {
    if (expected != actual) throw TestFailure("$what: expected <$expected>, got <$actual>")
}

inline fun <reified E : Throwable> expectThrows(what: String, block: () -> Unit): E {
    try {
        block()
    } catch (e: Throwable) {
        if (e is E) return e
        throw TestFailure("$what: expected ${E::class.simpleName}, got $e")
    }
    throw TestFailure("$what: expected ${E::class.simpleName}, nothing was thrown")
}

class Suite {
    private val tests = mutableListOf<Pair<String, () -> Unit>>()
    fun test(name: String, body: () -> Unit) { tests += name to body }

    fun run(filter: String?): Int {
        var passed = 0
        var failed = 0
        for ((name, body) in tests) {
            if (filter != null && !name.contains(filter)) continue
            val started = System.nanoTime()
            try {
                body()
                passed++
                println("PASS  $name (${(System.nanoTime() - started) / 1_000_000} ms)")
            } catch (e: Throwable) {
                failed++
                println("FAIL  $name: $e")
                e.printStackTrace(System.out)
            }
        }
        println()
        println("kotlin: $passed passed, $failed failed")
        return failed
    }
}

fun main(args: Array<String>) {
    val suite = Suite()
    GridWorkerDayTest.register(suite)
    ListsTest.register(suite)
    SyncWithServerTest.register(suite)
    val failed = suite.run(args.firstOrNull())
    exitProcess(if (failed == 0) 0 else 1)
}
