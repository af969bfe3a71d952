// The iOS app's entry point. Add this file and the `XiuhuaUI` product of the package in
// ios/Package.swift to an Xcode iOS app target (see README, "Mobile developers").
import Security
import SwiftUI
import Xiuhua
import XiuhuaUI

@main
struct XiuhuaApp: App {
    @State private var repo: XiuhuaRepository?
    @State private var failure: String?

    var body: some Scene {
        WindowGroup {
            if let repo {
                RootView(repo: repo)
            } else if let failure {
                Text(failure)
            } else {
                ProgressView().task { await open() }
            }
        }
    }

    private func open() async {
        do {
            let dir = try FileManager.default.url(for: .applicationSupportDirectory, in: .userDomainMask, appropriateFor: nil, create: true)
            let device = UserDefaults.standard.string(forKey: "device") ?? {
                let d = "ios-" + UUID().uuidString
                UserDefaults.standard.set(d, forKey: "device")
                return d
            }()
            repo = try await XiuhuaRepository.open(
                path: dir.appendingPathComponent("xiuhua.db").path,
                key: try StoreKey.get(),
                actor: Actor(user: "unenrolled", name: "未登记", role: "网格员", device: device)
            )
        } catch {
            failure = error.localizedDescription
        }
    }
}

/// The store's SQLCipher key: 32 random bytes in the Keychain, this device only.
enum StoreKey {
    static let account = "xiuhua-store-key"

    static func get() throws -> String {
        let query: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account,
                                    kSecReturnData as String: true]
        var item: CFTypeRef?
        if SecItemCopyMatching(query as CFDictionary, &item) == errSecSuccess, let data = item as? Data,
           let key = String(data: data, encoding: .utf8) {
            return key
        }
        var bytes = [UInt8](repeating: 0, count: 32)
        guard SecRandomCopyBytes(kSecRandomDefault, bytes.count, &bytes) == errSecSuccess else {
            throw NSError(domain: "xiuhua", code: 1, userInfo: [NSLocalizedDescriptionKey: "no random bytes"])
        }
        let key = Data(bytes).base64EncodedString()
        let add: [String: Any] = [kSecClass as String: kSecClassGenericPassword, kSecAttrAccount as String: account,
                                  kSecAttrAccessible as String: kSecAttrAccessibleAfterFirstUnlockThisDeviceOnly,
                                  kSecValueData as String: Data(key.utf8)]
        let status = SecItemAdd(add as CFDictionary, nil)
        guard status == errSecSuccess else {
            throw NSError(domain: "xiuhua", code: Int(status), userInfo: [NSLocalizedDescriptionKey: "Keychain error \(status)"])
        }
        return key
    }
}
