//! The uniffi bindings generator, built from the same uniffi version as `xiuhua_ffi`.

fn main() {
    uniffi::uniffi_bindgen_main()
}
