// Runs on the JVM against the generated Kotlin bindings and the real native
// library (loaded by JNA), as an Android app would.
import org.fieldsync.core.coreVersion

fun main() {
    var passed = 0
    var failed = 0
    fun test(name: String, body: () -> Unit) {
        try {
            body()
            passed++
            println("ok   $name")
        } catch (e: Throwable) {
            failed++
            println("FAIL $name: $e")
        }
    }

    test("the native library reports the core version") {
        val version = coreVersion()
        check(Regex("""\d+\.\d+\.\d+""").matches(version)) { "unexpected version '$version'" }
    }

    println("$passed passed, $failed failed")
    if (failed > 0) kotlin.system.exitProcess(1)
}
