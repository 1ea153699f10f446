//! The Dockerfile, checked without a container engine: its build stage is
//! replayed on a copy of the tree, laid out as the image would see it.
//!
//! The test reads the Dockerfile, finds the stage the final image copies its
//! binary from, and goes through that stage's instructions in order: `COPY`
//! lines copy from the build context (this repository, less what
//! `.dockerignore` leaves out) into a mirror of the image's file system under
//! `target/dockerfile-check/root`, `WORKDIR` and `ENV` are followed, and in a
//! `RUN` line the file commands before the cargo command run too (stand-ins
//! created by hand, for instance). The cargo command itself is run as `cargo
//! metadata` and then `cargo check` with the same arguments less
//! `--release`: manifest, workspace and lock file resolution (what a stale
//! stand-in breaks) is exactly cargo's, at a fraction of a release build's
//! ~9 minutes. What the `RUN` line does after the cargo command deals with
//! its output (the binary) and is not replayed.
//!
//! The check uses the repository's target folder (or `CARGO_TARGET_DIR`), so
//! the dependencies that `cargo clippy` (scripts/test.sh's lint step) or an
//! earlier run checked are reused, and the copies keep their files'
//! modification times, so a second run finds everything fresh.
//! `TMP_DOCKERFILE` points the test at another Dockerfile (to see it fail on
//! an old one).

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dockerfile_text() -> (PathBuf, String) {
    let path = match std::env::var_os("TMP_DOCKERFILE") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => repo_root().join("Dockerfile"),
    };
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    (path, text)
}

// ---------------------------------------------------------------------------
// Dockerfile parsing
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct Instruction {
    line: usize,
    keyword: String,
    args: String,
}

/// The instructions, with line continuations joined and comment lines (also
/// those inside a continuation, as Docker does) dropped.
fn instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut current: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_none()) {
            continue;
        }
        let (body, continues) = match trimmed.strip_suffix('\\') {
            Some(b) => (b.trim_end(), true),
            None => (trimmed, false),
        };
        let (line, mut acc) = current.take().unwrap_or((i + 1, String::new()));
        if !acc.is_empty() && !body.is_empty() {
            acc.push(' ');
        }
        acc.push_str(body);
        if continues {
            current = Some((line, acc));
        } else if !acc.trim().is_empty() {
            let (keyword, args) = acc
                .trim()
                .split_once(char::is_whitespace)
                .unwrap_or((&acc, ""));
            out.push(Instruction {
                line,
                keyword: keyword.to_ascii_uppercase(),
                args: args.trim().to_owned(),
            });
        }
    }
    if let Some((line, acc)) = current {
        panic!("Dockerfile line {line}: continuation never ends: {acc}");
    }
    out
}

#[derive(Debug)]
struct Stage {
    name: Option<String>,
    instructions: Vec<Instruction>,
}

fn stages(text: &str) -> Vec<Stage> {
    let mut stages: Vec<Stage> = Vec::new();
    for ins in instructions(text) {
        if ins.keyword == "FROM" {
            let words: Vec<&str> = ins.args.split_whitespace().collect();
            let name = words
                .iter()
                .position(|w| w.eq_ignore_ascii_case("as"))
                .and_then(|i| words.get(i + 1))
                .map(|s| s.to_string());
            stages.push(Stage {
                name,
                instructions: vec![ins],
            });
        } else {
            match stages.last_mut() {
                Some(stage) => stage.instructions.push(ins),
                None if ins.keyword == "ARG" => {}
                None => panic!("Dockerfile line {}: {} before FROM", ins.line, ins.keyword),
            }
        }
    }
    assert!(!stages.is_empty(), "the Dockerfile has no FROM");
    stages
}

/// Splits leading `--flag[=value]` words off instruction arguments.
fn split_flags(args: &str) -> (Vec<String>, String) {
    let mut flags = Vec::new();
    let mut rest = args.trim_start();
    while let Some(after) = rest.strip_prefix("--") {
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        flags.push(format!("--{}", &after[..end]));
        rest = after[end..].trim_start();
    }
    (flags, rest.to_owned())
}

/// Shell words of a simple command: whitespace-separated, with '...' and
/// "..." quoting. Enough for the Dockerfile's own commands.
fn shell_words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => {
                in_word = true;
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    word.push(c);
                }
            }
            '"' => {
                in_word = true;
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => word.extend(chars.next()),
                        c => word.push(c),
                    }
                }
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

/// The arguments of a `COPY`/`ADD` line: JSON form or shell words.
fn copy_words(rest: &str) -> Vec<String> {
    if rest.trim_start().starts_with('[') {
        serde_json::from_str(rest).unwrap_or_else(|e| panic!("COPY {rest}: {e}"))
    } else {
        shell_words(rest)
    }
}

/// The stage the final image copies its files from (`COPY --from=NAME`).
fn build_stage(stages: &[Stage]) -> (&Stage, &Stage) {
    let last = stages.last().unwrap();
    let from = last
        .instructions
        .iter()
        .filter(|i| i.keyword == "COPY")
        .find_map(|i| {
            split_flags(&i.args)
                .0
                .iter()
                .find_map(|f| f.strip_prefix("--from=").map(str::to_owned))
        })
        .expect("the final stage copies nothing from a build stage (COPY --from=...)");
    let stage = stages
        .iter()
        .find(|s| {
            s.name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(&from))
        })
        .unwrap_or_else(|| panic!("no stage named {from:?}"));
    (stage, last)
}

// ---------------------------------------------------------------------------
// .dockerignore
// ---------------------------------------------------------------------------

struct DockerIgnore {
    /// (negated, pattern segments)
    patterns: Vec<(bool, Vec<String>)>,
}

impl DockerIgnore {
    fn load(context: &Path) -> DockerIgnore {
        let text = std::fs::read_to_string(context.join(".dockerignore")).unwrap_or_default();
        let patterns = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (negated, p) = match l.strip_prefix('!') {
                    Some(p) => (true, p.trim()),
                    None => (false, l),
                };
                // As Docker cleans them: no leading "/" or "./", no trailing "/".
                let p = p.trim_start_matches("./").trim_matches('/');
                (negated, p.split('/').map(str::to_owned).collect())
            })
            .collect();
        DockerIgnore { patterns }
    }

    fn has_exceptions(&self) -> bool {
        self.patterns.iter().any(|(n, _)| *n)
    }

    /// Whether `rel` (a `/`-separated path relative to the context) is left
    /// out: the last pattern matching it, or one of its parent folders, wins.
    fn ignored(&self, rel: &str) -> bool {
        let segs: Vec<&str> = rel.split('/').collect();
        let mut ignored = false;
        for (negated, pattern) in &self.patterns {
            let hit = (1..=segs.len()).any(|n| match_segments(pattern, &segs[..n]));
            if hit {
                ignored = !negated;
            }
        }
        ignored
    }
}

fn match_segments(pattern: &[String], path: &[&str]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((p, rest)) if p == "**" => {
            (0..=path.len()).any(|skip| match_segments(rest, &path[skip..]))
        }
        Some((p, rest)) => match path.split_first() {
            Some((s, path_rest)) => {
                glob(p.as_bytes(), s.as_bytes()) && match_segments(rest, path_rest)
            }
            None => false,
        },
    }
}

/// `*` and `?` within one path segment.
fn glob(p: &[u8], s: &[u8]) -> bool {
    match (p.first(), s.first()) {
        (None, None) => true,
        (Some(b'*'), _) => glob(&p[1..], s) || (!s.is_empty() && glob(p, &s[1..])),
        (Some(b'?'), Some(_)) => glob(&p[1..], &s[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &s[1..]),
        _ => false,
    }
}

// ---------------------------------------------------------------------------
// Replaying the build stage
// ---------------------------------------------------------------------------

/// The image's file system, mirrored under `root`.
struct Mirror {
    root: PathBuf,
    context: PathBuf,
    ignore: DockerIgnore,
    workdir: String,
    env: HashMap<String, String>,
}

impl Mirror {
    fn host(&self, image_path: &str) -> PathBuf {
        let abs = if image_path.starts_with('/') {
            image_path.to_owned()
        } else {
            format!("{}/{}", self.workdir.trim_end_matches('/'), image_path)
        };
        self.root.join(abs.trim_start_matches('/'))
    }

    /// `COPY src... dest` from the build context.
    fn copy(&self, ins: &Instruction) {
        let (flags, rest) = split_flags(&ins.args);
        assert!(
            !flags.iter().any(|f| f.starts_with("--from=")),
            "line {}: COPY --from in the build stage is not replayed by this test",
            ins.line
        );
        let mut words = copy_words(&rest);
        assert!(
            words.len() >= 2,
            "line {}: COPY needs a source and a destination",
            ins.line
        );
        let dest_word = words.pop().unwrap();
        let dest = self.host(&dest_word);
        let into_dir = dest_word.ends_with('/') || words.len() > 1 || dest_word == ".";
        for src in &words {
            assert!(
                !src.contains(['*', '?', '[']),
                "line {}: COPY with a wildcard ({src}) is not replayed by this test",
                ins.line
            );
            let rel = src.trim_start_matches("./").trim_matches('/');
            let from = if rel.is_empty() || rel == "." {
                self.context.clone()
            } else {
                self.context.join(rel)
            };
            if !rel.is_empty() && rel != "." && self.ignored(rel) {
                panic!(
                    "line {}: COPY {src}: .dockerignore leaves it out of the build context",
                    ins.line
                );
            }
            let meta = std::fs::metadata(&from).unwrap_or_else(|e| {
                panic!(
                    "line {}: COPY {src}: not in the build context: {e}",
                    ins.line
                )
            });
            if meta.is_dir() {
                // A folder's contents go into the destination folder.
                self.copy_tree(&from, rel, &dest);
            } else {
                let target = if into_dir {
                    dest.join(from.file_name().unwrap())
                } else {
                    dest.clone()
                };
                copy_file(&from, &target);
            }
        }
    }

    fn ignored(&self, rel: &str) -> bool {
        let rel = rel.trim_start_matches("./");
        !rel.is_empty() && rel != "." && self.ignore.ignored(rel)
    }

    fn copy_tree(&self, from: &Path, rel: &str, dest: &Path) {
        std::fs::create_dir_all(dest).unwrap();
        let mut entries: Vec<_> = std::fs::read_dir(from)
            .unwrap_or_else(|e| panic!("read {}: {e}", from.display()))
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let name = entry.file_name().to_string_lossy().into_owned();
            let child_rel = if rel.is_empty() || rel == "." {
                name.clone()
            } else {
                format!("{rel}/{name}")
            };
            let ty = entry.file_type().unwrap();
            let path = entry.path();
            if self.ignored(&child_rel) {
                // Docker still walks an excluded folder when an exception
                // (`!pattern`) could bring something inside it back.
                if !(ty.is_dir() && self.ignore.has_exceptions()) {
                    continue;
                }
            }
            if ty.is_dir() {
                self.copy_tree(&path, &child_rel, &dest.join(&name));
            } else if !self.ignored(&child_rel) {
                copy_file(&path, &dest.join(&name));
            }
        }
    }

    /// A `RUN` line: the commands before the cargo command (file commands
    /// only), then the cargo command as `cargo metadata` + `cargo check`.
    /// Returns the cargo commands run.
    fn run(&self, ins: &Instruction, target_dir: &Path) -> Vec<Vec<String>> {
        let (_flags, script) = split_flags(&ins.args);
        let mut cargo_runs = Vec::new();
        for segment in script.split("&&").map(str::trim) {
            let words = shell_words(segment);
            let Some(program) = words.first() else {
                continue;
            };
            if program == "cargo" {
                let sub = words.get(1).map(String::as_str).unwrap_or("");
                match sub {
                    "build" => {
                        let cwd = self.host(&self.workdir);
                        let mut metadata =
                            vec!["metadata".to_owned(), "--format-version=1".to_owned()];
                        metadata.extend(
                            words[2..]
                                .iter()
                                .filter(|w| {
                                    ["--locked", "--frozen", "--offline"].contains(&w.as_str())
                                })
                                .cloned(),
                        );
                        cargo(&metadata, &cwd, &self.env, target_dir, ins);
                        // The same arguments less `--release`: the profile
                        // changes code generation, not what cargo must find,
                        // and the dev profile's checked dependencies are the
                        // ones the lint step (clippy) already has.
                        let mut check = vec!["check".to_owned()];
                        check.extend(words[2..].iter().filter(|w| *w != "--release").cloned());
                        cargo(&check, &cwd, &self.env, target_dir, ins);
                        cargo_runs.push(words.clone());
                        // What follows deals with the build's output.
                        break;
                    }
                    // Cleaning build output: nothing to replay.
                    "clean" => continue,
                    _ => {
                        let cwd = self.host(&self.workdir);
                        cargo(&words[1..], &cwd, &self.env, target_dir, ins);
                        cargo_runs.push(words.clone());
                    }
                }
                continue;
            }
            let file_commands = [
                "mkdir", "touch", "echo", "printf", "rm", "cp", "mv", "cat", "true",
            ];
            if !file_commands.contains(&program.as_str()) {
                // Package installs and the like: not replayed on this host.
                eprintln!("line {}: not replayed: {segment}", ins.line);
                continue;
            }
            assert!(
                !words.iter().any(|w| w.starts_with('/') && !w.starts_with(&self.workdir)),
                "line {}: `{segment}` names a path outside WORKDIR {}, which this test does not replay",
                ins.line,
                self.workdir
            );
            let cwd = self.host(&self.workdir);
            let segment = segment.replace(&self.workdir, &cwd.display().to_string());
            let out = Command::new("sh")
                .arg("-c")
                .arg(&segment)
                .current_dir(&cwd)
                .output()
                .expect("run sh");
            assert!(
                out.status.success(),
                "Dockerfile line {}: `{segment}` failed: {}",
                ins.line,
                String::from_utf8_lossy(&out.stderr)
            );
        }
        cargo_runs
    }
}

fn copy_file(from: &Path, to: &Path) {
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).unwrap();
    }
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} to {}: {e}", from.display(), to.display()));
    // Keep the modification time, so that cargo finds an unchanged file
    // fresh on the next run.
    let mtime = std::fs::metadata(from).unwrap().modified().unwrap();
    std::fs::File::options()
        .write(true)
        .open(to)
        .and_then(|f| f.set_modified(mtime))
        .unwrap_or_else(|e| panic!("set mtime of {}: {e}", to.display()));
}

/// Runs `cargo args` in `cwd` with the stage's environment (none of this
/// test's `CARGO_*` variables) and a shared target folder; panics with
/// cargo's output when it fails.
fn cargo(
    args: &[String],
    cwd: &Path,
    env: &HashMap<String, String>,
    target_dir: &Path,
    ins: &Instruction,
) {
    let program = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(program);
    cmd.args(args).current_dir(cwd);
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if key.starts_with("CARGO_") && key != "CARGO_HOME" {
            cmd.env_remove(key);
        }
    }
    cmd.envs(env)
        .env("CARGO_TARGET_DIR", target_dir)
        .env("CARGO_TERM_COLOR", "never")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let (status, stdout, stderr) = run_bounded(cmd, Duration::from_secs(30 * 60));
    eprintln!(
        "line {}: cargo {} ({:.1} s)",
        ins.line,
        args.join(" "),
        started.elapsed().as_secs_f64()
    );
    assert!(
        status.is_some_and(|s| s.success()),
        "Dockerfile line {}: `cargo {}` (replaying `cargo build`) failed ({}) in the image's \
         layout of the build context ({}):\n{}\n{}",
        ins.line,
        args.join(" "),
        status.map_or("timed out after 30 min".to_owned(), |s| s.to_string()),
        cwd.display(),
        stderr
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n"),
        if args[0] == "metadata" { "" } else { &stdout },
    );
}

fn run_bounded(
    mut cmd: Command,
    timeout: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    let mut child = cmd.spawn().expect("spawn cargo");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let read_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let read_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    (status, read_out.join().unwrap(), read_err.join().unwrap())
}

/// Replays the build stage; returns the cargo commands it ran.
fn replay(text: &str) -> Vec<Vec<String>> {
    let all = stages(text);
    let (stage, _) = build_stage(&all);
    let base = repo_root().join("target/dockerfile-check");
    let root = base.join("root");
    if root.exists() {
        std::fs::remove_dir_all(&root).unwrap();
    }
    std::fs::create_dir_all(&root).unwrap();
    // The repository's own target folder (or CARGO_TARGET_DIR): the copy is
    // a package of its own for cargo, but the dependencies are shared.
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"));
    let mut mirror = Mirror {
        root,
        context: repo_root(),
        ignore: DockerIgnore::load(&repo_root()),
        workdir: "/".to_owned(),
        env: HashMap::new(),
    };
    let mut cargo_runs = Vec::new();
    for ins in &stage.instructions {
        match ins.keyword.as_str() {
            "FROM" | "ARG" | "LABEL" | "USER" | "EXPOSE" | "SHELL" => {}
            "WORKDIR" => {
                let dir = ins.args.trim();
                mirror.workdir = if dir.starts_with('/') {
                    dir.to_owned()
                } else {
                    format!("{}/{dir}", mirror.workdir.trim_end_matches('/'))
                };
                std::fs::create_dir_all(mirror.host(&mirror.workdir.clone())).unwrap();
            }
            "ENV" => {
                let words = shell_words(&ins.args);
                if words.len() >= 2 && !words[0].contains('=') {
                    mirror.env.insert(words[0].clone(), words[1..].join(" "));
                } else {
                    for w in words {
                        if let Some((k, v)) = w.split_once('=') {
                            mirror.env.insert(k.to_owned(), v.to_owned());
                        }
                    }
                }
                mirror.env.remove("PATH");
            }
            "COPY" | "ADD" => mirror.copy(ins),
            "RUN" => cargo_runs.extend(mirror.run(ins, &target_dir)),
            other => panic!(
                "line {}: {other} in the build stage is not replayed by this test",
                ins.line
            ),
        }
    }
    cargo_runs
}

// ---------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------

/// The build stage, replayed on a copy of the tree: cargo finds every file
/// the manifests name (a stand-in missing for a declared bench or workspace
/// member fails here, as it fails `docker build`), the lock file is current,
/// and the proxy binary type-checks there. Only the proxy binary is built.
#[test]
fn build_stage_builds_on_a_copy_of_the_tree() {
    let (path, text) = dockerfile_text();
    let started = Instant::now();
    let runs = replay(&text);
    eprintln!(
        "build stage replayed in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let builds: Vec<_> = runs
        .iter()
        .filter(|w| w.get(1).is_some_and(|s| s == "build"))
        .collect();
    assert!(
        !builds.is_empty(),
        "{}: the build stage runs no `cargo build`",
        path.display()
    );
    for build in builds {
        let has = |flag: &str| build.iter().any(|w| w == flag);
        let bin = build
            .windows(2)
            .find(|w| w[0] == "--bin")
            .map(|w| w[1].as_str());
        assert_eq!(
            bin,
            Some("temporal-mtls-proxy"),
            "builds the proxy binary only: {build:?}"
        );
        assert!(
            has("--release") && has("--locked"),
            "a locked release build: {build:?}"
        );
    }
}

/// What the image must never contain (build output, local tools, the
/// development PKI's private keys, git history) stays out of the build
/// context, and what cargo needs goes in.
#[test]
fn dockerignore_keeps_local_state_and_keys_out() {
    let root = repo_root();
    assert!(
        root.join(".dockerignore").is_file(),
        ".dockerignore is missing"
    );
    let ignore = DockerIgnore::load(&root);
    for left_out in [
        "target",
        "target/release/temporal-mtls-proxy",
        ".tools/venv/bin/temporal",
        "dev-pki",
        "dev-pki/ca.key",
        ".git",
        ".git/HEAD",
    ] {
        assert!(
            ignore.ignored(left_out),
            ".dockerignore must leave out {left_out}"
        );
    }
    for kept in [
        "Cargo.toml",
        "Cargo.lock",
        "src/main.rs",
        "src/lib.rs",
        "benches/authz.rs",
    ] {
        assert!(!ignore.ignored(kept), ".dockerignore must keep {kept}");
    }
}

/// The runtime stage runs as a fixed non-root user, takes the binary the
/// build stage produced, and starts it.
#[test]
fn runtime_stage_runs_the_built_binary_as_non_root() {
    let (_, text) = dockerfile_text();
    let all = stages(&text);
    let (build, runtime) = build_stage(&all);
    let user = runtime
        .instructions
        .iter()
        .rev()
        .find(|i| i.keyword == "USER")
        .map(|i| i.args.clone())
        .expect("the runtime stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(
        uid != "root" && uid != "0",
        "the image must not run as root (USER {user})"
    );
    let copy = runtime
        .instructions
        .iter()
        .find(|i| i.keyword == "COPY" && i.args.contains("--from="))
        .unwrap();
    let (_, rest) = split_flags(&copy.args);
    let words = copy_words(&rest);
    let (src, dest) = (&words[0], &words[words.len() - 1]);
    let build_text: String = build
        .instructions
        .iter()
        .map(|i| i.args.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        build_text.contains(src.as_str()) || src.contains("/target/release/temporal-mtls-proxy"),
        "the runtime stage copies {src}, which the build stage does not produce"
    );
    let entrypoint = runtime
        .instructions
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .expect("ENTRYPOINT");
    assert!(
        entrypoint.args.contains(dest.as_str()),
        "ENTRYPOINT runs {dest}"
    );
}

#[test]
fn dockerignore_patterns_match_as_docker_does() {
    let ignore = DockerIgnore {
        patterns: vec![
            (false, vec!["target".into()]),
            (false, vec!["**".into(), "node_modules".into()]),
            (false, vec!["*.key".into()]),
            (true, vec!["keep.key".into()]),
        ],
    };
    assert!(ignore.ignored("target/debug/x"));
    assert!(
        !ignore.ignored("tools/target/x"),
        "patterns are anchored at the root"
    );
    assert!(ignore.ignored("tests/typescript/node_modules/a"));
    assert!(ignore.ignored("node_modules"));
    assert!(ignore.ignored("a.key"));
    assert!(!ignore.ignored("keep.key"));
    assert!(!ignore.ignored("dir/a.key"));
    assert_eq!(
        shell_words(r#"echo 'fn main() {}' > "src/main.rs""#),
        ["echo", "fn main() {}", ">", "src/main.rs"]
    );
}
