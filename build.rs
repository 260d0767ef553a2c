//! Builds the C++ glue in cpp/ against libwebrtc (Debian's tg_owt) and links
//! it, with flags and libraries taken from the package's CMake metadata.

#[path = "build/cmake_targets.rs"]
mod cmake_targets;
#[path = "build/libwebrtc.rs"]
mod libwebrtc;

const BRIDGES: &[&str] = &["src/rtc/sys.rs"];
const CPP: &[&str] = &[
    "cpp/src/audio_device.cc",
    "cpp/src/call_apm.cc",
    "cpp/src/call_audio.cc",
    "cpp/src/codecs.cc",
    "cpp/src/dtmf_tap.cc",
    "cpp/src/legacy_audio.cc",
    "cpp/src/load_codecs.cc",
    "cpp/src/media_stats.cc",
    "cpp/src/network.cc",
    "cpp/src/peer_connection.cc",
    "cpp/src/runtime.cc",
    "cpp/src/srtp.cc",
    "cpp/src/task_queue_pool.cc",
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=build");
    println!("cargo:rerun-if-changed=cpp");
    let webrtc = libwebrtc::locate(std::path::Path::new("."));
    let mut build = cxx_build::bridges(BRIDGES);
    build.files(CPP).include("cpp/include");
    webrtc.configure(&mut build);
    build.compile("rtcgw-glue");
    webrtc.emit_link();
}
