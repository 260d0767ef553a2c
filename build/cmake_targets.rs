//! Reads CMake "exported targets" files (the `*Targets.cmake` a package
//! installs) well enough to resolve a target's include directories, compile
//! definitions and link line transitively. This keeps build.rs in step with
//! the package's own metadata instead of a hand-copied list that drifts.

use std::collections::{BTreeMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Default, Debug)]
pub struct Target {
    pub props: BTreeMap<String, String>,
}

#[derive(Default, Debug)]
pub struct Resolved {
    pub include_dirs: Vec<String>,
    pub definitions: Vec<String>,
    /// Library files or linker flags, in link order.
    pub link: Vec<String>,
}

#[derive(Default)]
pub struct Registry {
    targets: BTreeMap<String, Target>,
}

impl Registry {
    /// Loads every `*Targets*.cmake` in `dir`.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, String> {
        let mut n = 0;
        let entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
                name.contains("Targets") && name.ends_with(".cmake")
            })
            .collect();
        // The main file first: the per-configuration files extend its targets.
        files.sort_by_key(|p| p.file_name().map(|n| n.to_string_lossy().contains('-')));
        // The prefix is computed in the main file and shared by the others.
        let mut prefix = None;
        for file in files {
            let text = fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
            let prefix = prefix.get_or_insert_with(|| import_prefix(dir, &text));
            n += self.parse(&text, prefix);
        }
        Ok(n)
    }

    fn parse(&mut self, text: &str, prefix: &str) -> usize {
        let mut count = 0;
        let mut rest = text;
        while let Some(i) = rest.find("set_target_properties(") {
            rest = &rest[i + "set_target_properties(".len()..];
            let end = find_close(rest);
            let body = &rest[..end];
            rest = &rest[end..];
            let tokens = tokenize(body);
            if tokens.len() < 2 || tokens[1] != "PROPERTIES" {
                continue;
            }
            let target = self.targets.entry(tokens[0].clone()).or_default();
            for kv in tokens[2..].chunks(2) {
                if let [k, v] = kv {
                    target
                        .props
                        .insert(k.clone(), v.replace("${_IMPORT_PREFIX}", prefix));
                }
            }
            count += 1;
        }
        count
    }

    pub fn has(&self, name: &str) -> bool {
        self.targets.contains_key(name)
    }

    pub fn resolve(&self, name: &str) -> Result<Resolved, String> {
        let mut out = Resolved::default();
        let mut seen = HashSet::new();
        self.walk(name, &mut out, &mut seen)?;
        Ok(out)
    }

    fn walk(
        &self,
        name: &str,
        out: &mut Resolved,
        seen: &mut HashSet<String>,
    ) -> Result<(), String> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        // Targets CMake itself provides.
        if name == "Threads::Threads" {
            out.link.push("-lpthread".into());
            return Ok(());
        }
        let t = self
            .targets
            .get(name)
            .ok_or_else(|| format!("CMake target {name} is not defined by the loaded packages"))?;
        if let Some(loc) = t
            .props
            .iter()
            .find(|(k, _)| k.starts_with("IMPORTED_LOCATION"))
            .map(|(_, v)| v)
        {
            out.link.push(loc.clone());
        }
        for key in [
            "INTERFACE_INCLUDE_DIRECTORIES",
            "INTERFACE_COMPILE_DEFINITIONS",
        ] {
            for item in list(t.props.get(key)) {
                let dst = if key.contains("INCLUDE") {
                    &mut out.include_dirs
                } else {
                    &mut out.definitions
                };
                if !dst.contains(&item) {
                    dst.push(item);
                }
            }
        }
        for item in list(t.props.get("INTERFACE_LINK_LIBRARIES")) {
            let item = item
                .strip_prefix("$<LINK_ONLY:")
                .and_then(|s| s.strip_suffix('>'))
                .map(str::to_string)
                .unwrap_or(item);
            if item.contains("::") {
                self.walk(&item, out, seen)?;
            } else if !out.link.contains(&item) || item.starts_with("-Wl") {
                out.link.push(item);
            }
        }
        Ok(())
    }
}

fn list(v: Option<&String>) -> Vec<String> {
    v.map(|s| {
        s.split(';')
            .filter(|x| !x.is_empty())
            .map(|x| x.replace("\\$", "$"))
            .collect()
    })
    .unwrap_or_default()
}

/// `_IMPORT_PREFIX` is the file's directory walked up once per
/// `get_filename_component(_IMPORT_PREFIX ... PATH)` after the first.
fn import_prefix(dir: &Path, text: &str) -> String {
    let ups = text
        .matches("get_filename_component(_IMPORT_PREFIX \"${_IMPORT_PREFIX}\" PATH)")
        .count();
    let mut p = dir.to_path_buf();
    for _ in 0..ups {
        p.pop();
    }
    let s = p.to_string_lossy().to_string();
    if s == "/" { String::new() } else { s }
}

fn find_close(s: &str) -> usize {
    let mut in_str = false;
    let mut prev = '\0';
    for (i, c) in s.char_indices() {
        match c {
            '"' if prev != '\\' => in_str = !in_str,
            ')' if !in_str => return i,
            _ => {}
        }
        prev = c;
    }
    s.len()
}

fn tokenize(body: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_str = false;
    let mut prev = '\0';
    for c in body.chars() {
        match c {
            '"' if prev != '\\' => {
                if in_str {
                    out.push(std::mem::take(&mut cur));
                }
                in_str = !in_str;
            }
            c if c.is_whitespace() && !in_str => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
        prev = c;
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}
