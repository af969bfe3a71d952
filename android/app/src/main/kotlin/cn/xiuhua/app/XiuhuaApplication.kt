package cn.xiuhua.app

import android.app.Application
import android.content.Context
import android.provider.Settings
import android.security.keystore.KeyGenParameterSpec
import android.security.keystore.KeyProperties
import android.util.Base64
import cn.xiuhua.XiuhuaRepository
import cn.xiuhua.ffi.Actor
import kotlinx.coroutines.sync.Mutex
import kotlinx.coroutines.sync.withLock
import java.security.KeyStore
import java.security.SecureRandom
import java.util.UUID
import javax.crypto.Cipher
import javax.crypto.KeyGenerator
import javax.crypto.SecretKey
import javax.crypto.spec.GCMParameterSpec

/** Opens the one store of the process, encrypted with a key kept by the Android Keystore. */
class XiuhuaApplication : Application() {
    private val lock = Mutex()
    private var repo: XiuhuaRepository? = null

    /** The repository, opened on first use (off the main thread: `open` is a suspend call). */
    suspend fun repository(): XiuhuaRepository = lock.withLock {
        repo ?: XiuhuaRepository.open(
            path = getDatabasePath("xiuhua.db").apply { parentFile?.mkdirs() }.path,
            key = StoreKey.get(this),
            // Before enrollment: a provisional identity. An enrolled store acts as the device
            // and user it was enrolled as, whatever is passed here.
            actor = Actor("unenrolled", "未登记", "网格员", provisionalDevice()),
        ).also { repo = it }
    }

    private fun provisionalDevice(): String {
        val prefs = getSharedPreferences("xiuhua", Context.MODE_PRIVATE)
        return prefs.getString("device", null) ?: ("android-" + UUID.randomUUID()).also {
            prefs.edit().putString("device", it).apply()
        }
    }

    @Suppress("unused")
    private fun androidId(): String = Settings.Secure.getString(contentResolver, Settings.Secure.ANDROID_ID) ?: ""
}

/**
 * The store's SQLCipher key: 32 random bytes, kept wrapped (AES-GCM) by a non-exportable
 * Android Keystore key. Losing the Keystore key (factory reset) makes the store unreadable:
 * the device then enrolls again and bootstraps its grid from the server.
 */
object StoreKey {
    private const val ALIAS = "xiuhua-store-key"
    private const val PREF = "wrapped_store_key"

    fun get(context: Context): String {
        val prefs = context.getSharedPreferences("xiuhua", Context.MODE_PRIVATE)
        val wrapped = prefs.getString(PREF, null)
        if (wrapped != null) return unwrap(wrapped)
        val raw = ByteArray(32).also { SecureRandom().nextBytes(it) }
        val key = Base64.encodeToString(raw, Base64.NO_WRAP)
        prefs.edit().putString(PREF, wrap(key)).apply()
        return key
    }

    private fun keystoreKey(): SecretKey {
        val ks = KeyStore.getInstance("AndroidKeyStore").apply { load(null) }
        (ks.getKey(ALIAS, null) as? SecretKey)?.let { return it }
        val gen = KeyGenerator.getInstance(KeyProperties.KEY_ALGORITHM_AES, "AndroidKeyStore")
        gen.init(
            KeyGenParameterSpec.Builder(ALIAS, KeyProperties.PURPOSE_ENCRYPT or KeyProperties.PURPOSE_DECRYPT)
                .setBlockModes(KeyProperties.BLOCK_MODE_GCM)
                .setEncryptionPaddings(KeyProperties.ENCRYPTION_PADDING_NONE)
                .build(),
        )
        return gen.generateKey()
    }

    private fun wrap(secret: String): String {
        val c = Cipher.getInstance("AES/GCM/NoPadding")
        c.init(Cipher.ENCRYPT_MODE, keystoreKey())
        val out = c.iv + c.doFinal(secret.toByteArray())
        return Base64.encodeToString(out, Base64.NO_WRAP)
    }

    private fun unwrap(wrapped: String): String {
        val bytes = Base64.decode(wrapped, Base64.NO_WRAP)
        val c = Cipher.getInstance("AES/GCM/NoPadding")
        c.init(Cipher.DECRYPT_MODE, keystoreKey(), GCMParameterSpec(128, bytes, 0, 12))
        return String(c.doFinal(bytes, 12, bytes.size - 12))
    }
}
