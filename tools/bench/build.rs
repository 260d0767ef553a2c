//! Builds the codec-only reference (cpp/codec_only.cc) against the same
//! libwebrtc as the gateway, with the gateway's own build helpers.

#[path = "../../build/cmake_targets.rs"]
mod cmake_targets;
#[path = "../../build/libwebrtc.rs"]
mod libwebrtc;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=cpp");
    println!("cargo:rerun-if-changed=../../build");
    let webrtc = libwebrtc::locate(std::path::Path::new("../.."));
    let mut build = cxx_build::bridge("src/codec_only.rs");
    build
        .file("cpp/codec_only.cc")
        .include("cpp")
        .include("../../cpp/include");
    webrtc.configure(&mut build);
    build.compile("rtcgw-bench-codecs");
    // The gateway's rlib carries its libraries to this link; the files its
    // package lists by path are link arguments, which do not carry over.
    webrtc.emit_link();
}
