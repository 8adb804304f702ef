//! Files around the simulator that the README and CI promise: the cluster manifests in
//! `deploy/` (a Kubernetes Indexed Job, its merge Job and volume, a Slurm array script) have
//! the documented fields and expand to the right `--shard` commands; every
//! `scenarios/smoke/*.yaml` loads; the committed notebook has its outputs cleared.

use routelab::scenario;
use serde_yaml_ng::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

fn yaml(rel: &str) -> Value {
    serde_yaml_ng::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel} is not valid YAML: {e}"))
}

/// `v` at a dotted path of mapping keys and sequence indices, e.g. `spec.template.spec`.
fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        let next = match part.parse::<usize>() {
            Ok(i) => cur.get(i),
            Err(_) => cur.get(part),
        };
        cur = next.unwrap_or_else(|| panic!("missing field {path} (at {part})"));
    }
    cur
}

fn str_at<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path).as_str().unwrap_or_else(|| panic!("{path} is not a string: {:?}", at(v, path)))
}

fn u64_at(v: &Value, path: &str) -> u64 {
    at(v, path).as_u64().unwrap_or_else(|| panic!("{path} is not a count: {:?}", at(v, path)))
}

/// The container's command and args joined with spaces.
fn command_line(container: &Value) -> String {
    ["command", "args"]
        .iter()
        .filter_map(|k| container.get(*k))
        .flat_map(|v| v.as_sequence().expect("command/args are lists").iter())
        .map(|s| s.as_str().expect("command/args entries are strings"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The N of `--shard I/N` in a command line.
fn shard_count(cmd: &str) -> u64 {
    let tail = cmd.split("--shard").nth(1).unwrap_or_else(|| panic!("no --shard in {cmd:?}"));
    let arg = tail.split_whitespace().next().expect("--shard has a value");
    let n = arg.trim_matches('"').rsplit('/').next().expect("--shard I/N");
    n.parse().unwrap_or_else(|_| panic!("--shard value {arg:?} does not end in /N"))
}

use crate::common::TempDir;

/// A directory holding an executable `routelab` that prints its arguments, one per line.
#[cfg(unix)]
fn fake_routelab(tag: &str) -> TempDir {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new(tag);
    let exe = dir.0.join("routelab");
    std::fs::write(&exe, "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done\n")
        .expect("write fake routelab");
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    dir
}

fn path_with(dir: &Path) -> String {
    format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default())
}

fn lines(out: &std::process::Output) -> Vec<String> {
    assert!(out.status.success(), "failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

const JOB: &str = "deploy/k8s-indexed-job.yaml";

#[test]
fn k8s_indexed_job_has_the_documented_fields() {
    let job = yaml(JOB);
    assert_eq!(str_at(&job, "apiVersion"), "batch/v1");
    assert_eq!(str_at(&job, "kind"), "Job");
    assert_eq!(str_at(&job, "spec.completionMode"), "Indexed");
    let completions = u64_at(&job, "spec.completions");
    let parallelism = u64_at(&job, "spec.parallelism");
    assert!(completions >= 1, "completions must be at least 1");
    assert!(
        (1..=completions).contains(&parallelism),
        "parallelism {parallelism} must be in 1..=completions ({completions})"
    );
    u64_at(&job, "spec.backoffLimit");
    let pod = at(&job, "spec.template.spec");
    assert_eq!(str_at(pod, "restartPolicy"), "Never");

    let container = at(pod, "containers.0");
    assert!(!str_at(container, "image").is_empty());
    let cmd = command_line(container);
    assert!(cmd.starts_with("/bin/sh -c "), "shell form, so the index expands: {cmd:?}");
    for want in ["routelab run", "--shard", "JOB_COMPLETION_INDEX", "--out"] {
        assert!(cmd.contains(want), "{JOB}: command lacks {want:?}: {cmd:?}");
    }
    assert_eq!(shard_count(&cmd), completions, "--shard I/N must have N = completions");
    for r in ["requests.cpu", "requests.memory", "limits.cpu", "limits.memory"] {
        at(container, &format!("resources.{r}"));
    }

    // Results go to a mounted PersistentVolumeClaim.
    let mount = at(container, "volumeMounts.0");
    let mount_path = str_at(mount, "mountPath");
    assert!(cmd.contains(&format!("--out \"{mount_path}/")), "--out under {mount_path}: {cmd:?}");
    let volumes = at(pod, "volumes").as_sequence().expect("volumes is a list");
    let volume = volumes
        .iter()
        .find(|v| v.get("name") == mount.get("name"))
        .expect("the mounted volume is declared");
    let claim = str_at(volume, "persistentVolumeClaim.claimName");

    // The claim is the one deploy/k8s-results-pvc.yaml creates and the merge Job mounts.
    let pvc = yaml("deploy/k8s-results-pvc.yaml");
    assert_eq!(str_at(&pvc, "kind"), "PersistentVolumeClaim");
    assert_eq!(str_at(&pvc, "metadata.name"), claim);
    let merge = yaml("deploy/k8s-merge-job.yaml");
    assert_eq!(str_at(&merge, "apiVersion"), "batch/v1");
    assert_eq!(str_at(&merge, "kind"), "Job");
    let merge_pod = at(&merge, "spec.template.spec");
    assert_eq!(str_at(merge_pod, "restartPolicy"), "Never");
    assert_eq!(str_at(merge_pod, "volumes.0.persistentVolumeClaim.claimName"), claim);
    assert_eq!(str_at(merge_pod, "containers.0.volumeMounts.0.mountPath"), mount_path);
    let merge_cmd = command_line(at(merge_pod, "containers.0"));
    assert!(
        merge_cmd.contains(&format!("routelab merge {mount_path}/shard-* --out {mount_path}/")),
        "merge command: {merge_cmd:?}"
    );

    // The scenario it runs is in the repository (the container's working directory).
    let scenario_arg =
        cmd.split("routelab run").nth(1).and_then(|t| t.split_whitespace().next()).expect("file");
    scenario::load_cells(&root().join(scenario_arg), &Default::default())
        .unwrap_or_else(|e| panic!("{JOB} runs {scenario_arg}, which does not load: {e}"));
}

#[cfg(unix)]
#[test]
fn k8s_shard_command_expands_the_completion_index() {
    let job = yaml(JOB);
    let completions = u64_at(&job, "spec.completions");
    let container = at(&job, "spec.template.spec.containers.0");
    let argv: Vec<&str> = ["command", "args"]
        .iter()
        .flat_map(|k| at(container, k).as_sequence().expect("list").iter())
        .map(|s| s.as_str().expect("string"))
        .collect();
    let bin = fake_routelab("k8s");
    let index = completions - 1;
    let out = Command::new(argv[0])
        .args(&argv[1..])
        .env("PATH", path_with(&bin.0))
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .current_dir(root())
        .output()
        .expect("run the container command with /bin/sh");
    let args = lines(&out);
    let pos = |flag: &str| args.iter().position(|a| a == flag).expect(flag);
    assert_eq!(args[0], "run");
    assert_eq!(args[pos("--shard") + 1], format!("{index}/{completions}"));
    assert_eq!(args[pos("--out") + 1], format!("/results/shard-{index}"));
    assert!(args.iter().any(|a| a == "--quiet"));
}

const SLURM: &str = "deploy/slurm-array.sh";

#[test]
fn slurm_array_script_shards_by_task_id() {
    let text = read(SLURM);
    assert!(text.starts_with("#!"), "{SLURM} needs a shebang line");
    for want in ["#SBATCH --array=0-", "--shard", "SLURM_ARRAY_TASK_ID", "routelab merge"] {
        assert!(text.contains(want), "{SLURM} lacks {want:?}");
    }
    assert!(
        text.contains("--shard \"$SLURM_ARRAY_TASK_ID/$SHARDS\""),
        "{SLURM}: the task's shard is its array index"
    );
    assert!(text.contains("--dependency=afterok:"), "{SLURM}: the merge waits for the array");
    // The #SBATCH --array range and the default SHARDS describe the same N.
    let last: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("#SBATCH --array=0-"))
        .and_then(|r| r.trim().parse().ok())
        .expect("#SBATCH --array=0-LAST");
    assert!(
        text.contains(&format!("SHARDS=\"${{SHARDS:-{}}}\"", last + 1)),
        "{SLURM}: default SHARDS must be {} to match --array=0-{last}",
        last + 1
    );
}

#[cfg(unix)]
#[test]
fn slurm_array_task_runs_its_shard() {
    let bin = fake_routelab("slurm");
    let script = root().join(SLURM);
    let out = Command::new("bash")
        .arg("-n")
        .arg(&script)
        .output()
        .expect("bash -n deploy/slurm-array.sh");
    assert!(out.status.success(), "syntax: {}", String::from_utf8_lossy(&out.stderr));
    let out = Command::new("bash")
        .arg(&script)
        .env("PATH", path_with(&bin.0))
        .env("SLURM_ARRAY_TASK_ID", "5")
        .env("SLURM_CPUS_PER_TASK", "2")
        .env("SHARDS", "6")
        .env_remove("SCENARIO")
        .env_remove("RESULTS")
        .env_remove("ROUTELAB")
        .current_dir(root())
        .output()
        .expect("run the array task");
    let args = lines(&out);
    assert_eq!(
        args,
        [
            "run",
            "scenarios/smoke/sweep-load.yaml",
            "--shard",
            "5/6",
            "--out",
            "results/sweep-load-sharded/shard-5",
            "--threads",
            "2",
            "--quiet",
            "--no-plots"
        ]
    );
}

#[test]
fn smoke_scenarios_load() {
    let dir = root().join("scenarios/smoke");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("scenarios/smoke exists")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 2, "expected the smoke scenarios, found {files:?}");
    let mut names = std::collections::BTreeSet::new();
    for f in &files {
        let cells = scenario::load_cells(f, &Default::default())
            .unwrap_or_else(|e| panic!("{} does not load: {e}", f.display()));
        assert!(names.insert(cells[0].name.clone()), "duplicate scenario name {}", cells[0].name);
        // CI's notebook run needs confidence intervals and paired differences.
        for c in &cells {
            assert!(c.replications >= 3, "{}: at least 3 replications", f.display());
            assert!(c.policies.len() >= 2, "{}: at least 2 policies", f.display());
        }
    }
    // The load sweep is what the notebook's "metric vs swept parameter" plot runs on.
    let sweep = scenario::load_cells(&dir.join("sweep-load.yaml"), &Default::default())
        .expect("sweep-load loads");
    assert!(sweep.len() >= 3, "sweep-load sweeps at least 3 values");
    assert!(sweep.iter().all(|c| c.params.starts_with("workload.0.arrival.rate_per_s=")));
}

#[test]
fn committed_notebook_has_no_outputs() {
    let rel = "notebooks/design-review.ipynb";
    let nb: serde_json::Value = serde_json::from_str(&read(rel)).expect("notebook is JSON");
    let cells = nb["cells"].as_array().expect("cells");
    assert!(cells.iter().any(|c| c["cell_type"] == "code"));
    for (i, c) in cells.iter().enumerate().filter(|(_, c)| c["cell_type"] == "code") {
        assert!(
            c["outputs"].as_array().is_some_and(Vec::is_empty) && c["execution_count"].is_null(),
            "{rel}: code cell {i} has outputs; clear them before committing (diffs stay small)"
        );
    }
    let reqs = read("notebooks/requirements.txt");
    for pkg in ["pandas", "matplotlib", "nbclient", "nbformat", "ipykernel"] {
        assert!(
            reqs.lines().any(|l| l.starts_with(&format!("{pkg}=="))),
            "notebooks/requirements.txt must pin {pkg} with =="
        );
    }
    assert!(
        reqs.lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .all(|l| l.contains("==")),
        "notebooks/requirements.txt: every requirement pinned with =="
    );
}
