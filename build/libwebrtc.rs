//! Finds libwebrtc (Debian's tg_owt at the version pinned in
//! third_party/libwebrtc.toml, or RTCGW_LIBWEBRTC_CMAKE_DIR) and turns its
//! CMake metadata into compiler settings and a link line. Shared by the
//! gateway's build script and the benchmark tools' (which compile their own
//! codec-only reference against the same headers).

use std::path::{Path, PathBuf};

use crate::cmake_targets;

#[derive(serde::Deserialize)]
struct Manifest {
    cmake_dir: String,
    target: String,
}

/// libwebrtc as the package describes it.
pub struct Libwebrtc {
    resolved: cmake_targets::Resolved,
}

fn missing(what: &str) -> ! {
    eprintln!("error: libwebrtc not found ({what}): run scripts/fetch-libwebrtc");
    println!("cargo:warning=libwebrtc not found ({what}): run scripts/fetch-libwebrtc");
    std::process::exit(1);
}

/// Locates libwebrtc; `root` is the workspace's top directory. Exits the
/// build with a one-line "run scripts/fetch-libwebrtc" when it is missing.
pub fn locate(root: &Path) -> Libwebrtc {
    let manifest_path = root.join("third_party/libwebrtc.toml");
    println!("cargo:rerun-if-changed={}", manifest_path.display());
    println!("cargo:rerun-if-env-changed=RTCGW_LIBWEBRTC_CMAKE_DIR");
    println!("cargo:rerun-if-env-changed=RTCGW_ABSL_CMAKE_DIR");
    let manifest: Manifest = toml::from_str(
        &std::fs::read_to_string(&manifest_path).expect("third_party/libwebrtc.toml"),
    )
    .expect("third_party/libwebrtc.toml is not valid");
    let cmake_dir =
        PathBuf::from(std::env::var("RTCGW_LIBWEBRTC_CMAKE_DIR").unwrap_or(manifest.cmake_dir));
    if !cmake_dir.is_dir() {
        missing(&format!("{} does not exist", cmake_dir.display()));
    }
    // tg_owt's config calls find_dependency(absl): absl's CMake package sits
    // beside it unless overridden.
    let absl_dir = std::env::var("RTCGW_ABSL_CMAKE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| cmake_dir.parent().unwrap_or(Path::new("/")).join("absl"));

    let mut reg = cmake_targets::Registry::default();
    if reg.load_dir(&cmake_dir).unwrap_or(0) == 0 || !reg.has(&manifest.target) {
        missing(&format!(
            "no {} in {}",
            manifest.target,
            cmake_dir.display()
        ));
    }
    if reg.load_dir(&absl_dir).unwrap_or(0) == 0 {
        missing(&format!(
            "abseil's CMake package not in {}",
            absl_dir.display()
        ));
    }
    let resolved = reg
        .resolve(&manifest.target)
        .unwrap_or_else(|e| missing(&e));
    Libwebrtc { resolved }
}

impl Libwebrtc {
    /// Compiler settings for C++ that includes libwebrtc headers.
    pub fn configure(&self, build: &mut cc::Build) {
        build
            .std("c++20")
            // No NDEBUG: Debian builds tg_owt without it, so RTC_DCHECK_IS_ON
            // is 1 in the library, and it changes class layouts (sequence
            // checkers are members only then). With NDEBUG here,
            // sizeof(cricket::BasicPortAllocator) was 0x288 against the
            // library's 0x2e0, and constructing one corrupted the heap.
            .flag_if_supported("-Wno-deprecated-declarations")
            .flag_if_supported("-Wno-unused-parameter")
            .flag_if_supported("-Wno-deprecated-copy")
            .flag_if_supported("-Wno-missing-field-initializers");
        for dir in &self.resolved.include_dirs {
            build.include(dir);
        }
        for def in &self.resolved.definitions {
            match def.split_once('=') {
                Some((k, v)) => build.define(k, Some(v)),
                None => build.define(def, None),
            };
        }
    }

    /// The link line: the static library first, its shared dependencies
    /// after it.
    pub fn emit_link(&self) {
        for item in &self.resolved.link {
            let path = Path::new(item);
            if item.starts_with("-Wl,") {
                continue; // absl's --as-needed bracket around -latomic
            } else if let Some(lib) = item.strip_prefix("-l") {
                println!("cargo:rustc-link-lib=dylib={lib}");
            } else if item.ends_with(".a") {
                let dir = path.parent().unwrap();
                let name = path.file_stem().unwrap().to_string_lossy();
                println!("cargo:rustc-link-search=native={}", dir.display());
                println!(
                    "cargo:rustc-link-lib=static:-bundle={}",
                    name.trim_start_matches("lib")
                );
            } else if path.is_absolute() {
                if !path.exists() {
                    missing(&format!("{item} listed by the package does not exist"));
                }
                println!("cargo:rustc-link-arg={item}");
            }
        }
        println!("cargo:rustc-link-lib=dylib=stdc++");
    }
}
