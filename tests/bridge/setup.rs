//! `bridge-host setup <client>`: against real-looking configuration files
//! that already hold other servers and comments, the bridge is added and
//! everything else kept; a second run changes nothing and says so;
//! `--dry-run` prints the diff and writes nothing; `--remove` gives the
//! file back byte for byte. Plus a file that did not exist, a file the
//! client could not read either, a user's own `bridge` entry, and paths
//! that are not regular files. And files the pinned Codex and Gemini CLIs
//! wrote themselves (`mcp add`), which each client still reads whole after
//! setup.

use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{BIN, World, pinned};

/// The executable setup names: the binary's own path, resolved.
fn exe() -> String {
    std::fs::canonicalize(BIN)
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

const CODEX: &str = r#"# Codex, pointed at a local model.
model = "gpt-5-codex"
model_provider = "local"   # see [model_providers.local]
approval_policy = "on-request"

[model_providers.local]
name = "Local stand-in"
base_url = "http://127.0.0.1:8080/v1"
wire_api = "responses"
env_key = "LOCAL_API_KEY"

# Profiles: `codex --profile fast`.
[profiles.fast]
model = "gpt-5-mini"
model_reasoning_effort = "low"

[mcp_servers.docs]
command = "docs-mcp"
args = ["--stdio"]
env = { DOCS_TOKEN = "t0k3n" }

[features]
plugins = false
"#;

const VSCODE: &str = r#"{
	// Servers for every workspace.
	"servers": {
		"github": {
			"type": "http",
			"url": "https://api.githubcopilot.com/mcp/", // remote
		},
		/* a local one */
		"files": {
			"type": "stdio",
			"command": "npx",
			"args": ["-y", "@modelcontextprotocol/server-filesystem", "${workspaceFolder}"],
		},
	},
	"inputs": [
		{ "type": "promptString", "id": "token", "description": "A token", "password": true },
	],
}
"#;

const CURSOR: &str = r#"{
  // Cursor: global servers
  "mcpServers": {
    "playwright": { "command": "npx", "args": ["-y", "@playwright/mcp@latest"] },
    "context7": {
      "url": "https://mcp.context7.com/mcp",
      "headers": { "CONTEXT7_API_KEY": "${env:CONTEXT7_API_KEY}" },
    },
  },
}
"#;

const GEMINI: &str = r#"{
  // Gemini CLI's user settings
  "security": { "auth": { "selectedType": "gemini-api-key" } },
  "privacy": { "usageStatisticsEnabled": false },
  "mcpServers": {
    "time": {
      "command": "uvx",
      "args": ["mcp-server-time"],
      "trust": true
    }
  },
  "ui": { "theme": "GitHub" }
}
"#;

const CLAUDE: &str = r#"{
  "permissions": {
    "allow": ["Bash(cargo test:*)"],
    "defaultMode": "default"
  },
  "enabledPlugins": {
    "rust-analyzer-lsp@claude-plugins-official": true
  },
  "model": "opus"
}
"#;

/// `bridge-host setup <args>` run from the world's home.
fn setup(world: &World, args: &[&str]) -> crate::util::Cmd {
    let mut all = vec!["setup"];
    all.extend_from_slice(args);
    std::fs::create_dir_all(world.home()).unwrap();
    world.cmd(&world.home()).args(all)
}

fn config_arg(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

/// The whole cycle on `fixture` written at `file`: dry run, setup, second
/// run, dry-run removal, removal. `check` looks at the file after setup.
fn full_cycle(world: &World, client: &str, file: &Path, fixture: &str, check: impl Fn(&str)) {
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(file, fixture).unwrap();
    let config = config_arg(file);
    let args = |extra: &[&'static str]| {
        let mut a = vec![client, "--config", config.as_str()];
        a.extend_from_slice(extra);
        a
    };

    // --dry-run: the diff adds the bridge, and nothing is written.
    let (output, _) = setup(world, &args(&["--dry-run"])).output();
    assert!(output.status.success(), "{output:?}");
    let diff = String::from_utf8(output.stdout).unwrap();
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        diff.starts_with(&format!("--- {config} (now)\n+++ {config} (after)\n@@")),
        "{diff}"
    );
    let named = if client == "claude-code" {
        "session-bridge@session-bridge"
    } else {
        exe().leak()
    };
    assert!(
        diff.lines()
            .any(|l| l.starts_with('+') && l.contains(named)),
        "{diff}"
    );
    // It only adds: a line it takes out comes back with a comma after it.
    for taken in diff
        .lines()
        .filter(|l| l.starts_with('-') && !l.starts_with("---"))
    {
        let with_comma = format!("+{},", &taken[1..]);
        assert!(
            diff.lines().any(|l| l == with_comma),
            "{taken:?} changed in:\n{diff}"
        );
    }
    assert!(stderr.contains("dry run: nothing was written"), "{stderr}");
    assert_eq!(std::fs::read_to_string(file).unwrap(), fixture);

    // Setup: says what it added, where, what next and how to undo.
    let said = setup(world, &args(&[])).ok();
    assert!(said.starts_with(&format!("updated {config}:\n")), "{said}");
    assert!(
        said.contains(&format!(
            "To undo: bridge-host setup {client} --config {config} --remove"
        )),
        "{said}"
    );
    let after = std::fs::read_to_string(file).unwrap();
    check(&after);
    // Everything that was there still is, in order: setup only inserted.
    let kept: Vec<&str> = fixture.lines().filter(|l| !l.trim().is_empty()).collect();
    let mut rest = after.lines();
    for line in &kept {
        let trimmed = line.trim_end_matches(',');
        assert!(
            rest.any(|l| l.trim_end_matches(',') == trimmed),
            "lost or moved {line:?} in:\n{after}"
        );
    }

    // Again: nothing changes, and it says so.
    let said = setup(world, &args(&[])).ok();
    assert_eq!(
        said,
        format!(
            "{config} already holds everything `bridge-host setup {client} --config {config}` adds; nothing changed.\n"
        )
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), after);

    // --remove --dry-run: the diff takes the bridge out, nothing is written.
    let (output, _) = setup(world, &args(&["--remove", "--dry-run"])).output();
    assert!(output.status.success());
    let diff = String::from_utf8(output.stdout).unwrap();
    assert!(
        diff.lines()
            .any(|l| l.starts_with('-') && l.contains(named)),
        "{diff}"
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), after);

    // --remove: byte for byte what it was.
    let said = setup(world, &args(&["--remove"])).ok();
    assert!(
        said.starts_with(&format!("removed from {config}:\n")),
        "{said}"
    );
    assert!(
        said.contains("back as it was before setup, byte for byte"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(file).unwrap(), fixture);
}

fn jsonc(text: &str) -> Value {
    jsonc_with(text, &Default::default()).unwrap_or_else(|e| panic!("not JSONC ({e}):\n{text}"))
}

fn jsonc_with(text: &str, options: &jsonc_parser::ParseOptions) -> Result<Value, String> {
    let root = jsonc_parser::cst::CstRootNode::parse(text, options).map_err(|e| e.to_string())?;
    Ok(root
        .value()
        .and_then(|v| v.to_serde_value())
        .unwrap_or_default())
}

#[test]
fn codex_config_with_a_provider_profiles_and_another_server() {
    let world = World::new();
    let file = world.home().join("codex-home/config.toml");
    full_cycle(&world, "codex", &file, CODEX, |text| {
        let doc: toml_edit::DocumentMut = text.parse().expect("valid TOML");
        let bridge = &doc["mcp_servers"]["bridge"];
        assert_eq!(bridge["command"].as_str(), Some(exe().as_str()));
        // Every bridge tool runs unasked but `away`, which a person confirms.
        assert_eq!(
            bridge["default_tools_approval_mode"].as_str(),
            Some("approve")
        );
        assert_eq!(
            bridge["tools"]["away"]["approval_mode"].as_str(),
            Some("prompt")
        );
        assert_eq!(
            bridge["args"]
                .as_array()
                .unwrap()
                .iter()
                .next()
                .unwrap()
                .as_str(),
            Some("mcp")
        );
        // Codex gives a server only the variables named here: each one
        // that chooses the directory, cache, guest, its settings or the
        // retention, so the server runs the guest the hooks run.
        let passed: Vec<&str> = bridge["env_vars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(
            passed,
            [
                "BRIDGE_DIR",
                "BRIDGE_CACHE_DIR",
                "BRIDGE_GUEST",
                "BRIDGE_GUEST_SETTINGS",
                "BRIDGE_RETENTION"
            ]
        );
        assert_eq!(
            doc["mcp_servers"]["docs"]["command"].as_str(),
            Some("docs-mcp")
        );
        assert_eq!(
            doc["profiles"]["fast"]["model"].as_str(),
            Some("gpt-5-mini")
        );
        assert_eq!(doc["model_provider"].as_str(), Some("local"));
        assert!(text.contains("model_provider = \"local\"   # see [model_providers.local]"));
    });
}

#[test]
fn vscode_mcp_json_with_comments_and_trailing_commas() {
    let world = World::new();
    let file = world.home().join("vscode/mcp.json");
    full_cycle(&world, "vscode", &file, VSCODE, |text| {
        let value = jsonc(text);
        assert_eq!(
            value["servers"]["bridge"],
            serde_json::json!({"type": "stdio", "command": exe(), "args": ["mcp"]})
        );
        assert_eq!(value["servers"]["github"]["type"], "http");
        assert_eq!(value["servers"]["files"]["command"], "npx");
        assert!(text.contains("/* a local one */") && text.contains("// remote"));
    });
}

#[test]
fn cursor_mcp_json_with_comments_and_other_servers() {
    let world = World::new();
    let file = world.home().join(".cursor/mcp.json");
    full_cycle(&world, "cursor", &file, CURSOR, |text| {
        let value = jsonc(text);
        assert_eq!(
            value["mcpServers"]["bridge"],
            serde_json::json!({
                "command": exe(),
                "args": ["mcp"],
                "env": {"PROJECT_DIR": "${workspaceFolder}"}
            })
        );
        assert_eq!(value["mcpServers"]["playwright"]["command"], "npx");
        assert!(text.contains("// Cursor: global servers"));
    });
}

#[test]
fn gemini_settings_with_comments_auth_and_another_server() {
    let world = World::new();
    let file = world.home().join(".gemini/settings.json");
    let policy = world.home().join(".gemini/policies/session-bridge.toml");
    full_cycle(&world, "gemini", &file, GEMINI, |text| {
        // Gemini reads comments but not trailing commas: none were added.
        let options = jsonc_parser::ParseOptions {
            allow_trailing_commas: false,
            ..Default::default()
        };
        let value = jsonc_with(text, &options).expect("no trailing commas");
        assert_eq!(
            value["mcpServers"]["bridge"],
            serde_json::json!({"command": exe(), "args": ["mcp"]})
        );
        assert_eq!(value["mcpServers"]["time"]["trust"], true);
        assert_eq!(value["security"]["auth"]["selectedType"], "gemini-api-key");
        // Beside it, the policy: the bridge's tools unasked, `away` asks.
        let policy = std::fs::read_to_string(&policy).expect("the policy file");
        let rules: toml_edit::DocumentMut = policy.parse().expect("valid TOML");
        let rules: Vec<(&str, &str, i64)> = rules["rule"]
            .as_array_of_tables()
            .unwrap()
            .iter()
            .map(|r| {
                assert_eq!(r["mcpName"].as_str(), Some("bridge"), "{policy}");
                (
                    r["toolName"].as_str().unwrap(),
                    r["decision"].as_str().unwrap(),
                    r["priority"].as_integer().unwrap(),
                )
            })
            .collect();
        assert_eq!(rules, [("*", "allow", 100), ("away", "ask_user", 900)]);
    });
    // --remove took the policy file out too, and the folder setup made.
    assert!(!policy.parent().unwrap().exists());

    // A policy file of the user's own of that name: refused, nothing
    // written, and the user's file kept.
    std::fs::create_dir_all(policy.parent().unwrap()).unwrap();
    std::fs::write(&policy, "# mine\n").unwrap();
    let config = config_arg(&file);
    let (output, description) = setup(&world, &["gemini", "--config", &config]).output();
    assert_eq!(output.status.code(), Some(1), "{description}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("already exist with other contents, and setup did not write them")
            && stderr.contains(&policy.display().to_string())
            && stderr.contains("Nothing was written"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&policy).unwrap(), "# mine\n");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GEMINI);
}

#[test]
fn claude_code_settings_name_the_plugin_written_to_the_data_folder() {
    let world = World::new();
    let file = world.home().join(".claude/settings.json");
    let plugin = world.home().join(".local/share/session-bridge/claude-code");
    full_cycle(&world, "claude-code", &file, CLAUDE, |text| {
        let value: Value = serde_json::from_str(text).expect("plain JSON, as Claude Code reads it");
        assert_eq!(
            value["extraKnownMarketplaces"]["session-bridge"]["source"],
            serde_json::json!({"source": "directory", "path": plugin.to_string_lossy()})
        );
        assert_eq!(
            value["enabledPlugins"]["session-bridge@session-bridge"],
            true
        );
        assert_eq!(
            value["enabledPlugins"]["rust-analyzer-lsp@claude-plugins-official"],
            true
        );
        assert_eq!(value["permissions"]["defaultMode"], "default");
        // The plugin is on disk, as the repository has it, and its launcher
        // names this binary.
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in [
            ".claude-plugin/marketplace.json",
            "plugin/hooks/hooks.json",
            "plugin/bin/bridge-host",
        ] {
            assert_eq!(
                std::fs::read(plugin.join(name)).unwrap(),
                std::fs::read(repo.join(name)).unwrap(),
                "{name}"
            );
        }
        assert_eq!(
            std::fs::read_to_string(plugin.join("plugin/bin/installed-by-setup")).unwrap(),
            format!("{}\n", exe())
        );
    });
    // --remove took the plugin away too, and the folders setup made.
    assert!(!plugin.exists(), "{} is left", plugin.display());
    assert!(!world.home().join(".local/share/session-bridge").exists());
}

#[test]
fn the_plugins_launcher_runs_the_binary_setup_ran_from() {
    let world = World::new();
    setup(&world, &["claude-code"]).ok();
    let launcher = world
        .home()
        .join(".local/share/session-bridge/claude-code/plugin/bin/bridge-host");
    // No bridge-host on PATH, no ~/.cargo/bin: only the recorded binary.
    let version = world
        .sh(
            &world.home(),
            &format!("'{}' --version", launcher.display()),
        )
        .ok();
    assert!(version.starts_with("bridge-host "), "{version}");
}

#[test]
fn a_missing_file_is_created_and_removed_with_the_folder_setup_made() {
    let world = World::new();
    let file = world.home().join(".codex/config.toml");
    let said = setup(&world, &["codex"]).ok();
    assert!(
        said.starts_with(&format!(
            "created {}:\n  mcp_servers.bridge\n",
            file.display()
        )),
        "{said}"
    );
    assert!(
        said.contains("To undo: bridge-host setup codex --remove"),
        "{said}"
    );
    let doc: toml_edit::DocumentMut = std::fs::read_to_string(&file).unwrap().parse().unwrap();
    assert_eq!(
        doc["mcp_servers"]["bridge"]["command"].as_str(),
        Some(exe().as_str())
    );

    let said = setup(&world, &["codex", "--remove"]).ok();
    assert!(
        said.starts_with(&format!(
            "removed {} (setup had created it)",
            file.display()
        )),
        "{said}"
    );
    assert!(!file.exists());
    assert!(
        !world.home().join(".codex").exists(),
        "the folder setup made is left"
    );
    // A folder that was there stays.
    std::fs::create_dir_all(world.home().join(".gemini")).unwrap();
    setup(&world, &["gemini"]).ok();
    setup(&world, &["gemini", "--remove"]).ok();
    assert!(world.home().join(".gemini").is_dir());
    assert!(!world.home().join(".gemini/settings.json").exists());
}

#[test]
fn codex_home_names_codex_folder() {
    let world = World::new();
    let codex_home = world.home().join("elsewhere");
    let said = setup(&world, &["codex"])
        .env("CODEX_HOME", &codex_home)
        .ok();
    assert!(
        said.contains(&codex_home.join("config.toml").display().to_string()),
        "{said}"
    );
    assert!(codex_home.join("config.toml").is_file());
}

#[test]
fn vscode_user_profile_folder_by_default() {
    let world = World::new();
    setup(&world, &["vscode"]).ok();
    let file = if cfg!(target_os = "macos") {
        world
            .home()
            .join("Library/Application Support/Code/User/mcp.json")
    } else {
        world.home().join(".config/Code/User/mcp.json")
    };
    assert_eq!(
        jsonc(&std::fs::read_to_string(&file).unwrap())["servers"]["bridge"]["type"],
        "stdio"
    );
}

/// Each client's file, broken where the client would fail too.
#[test]
fn an_unparseable_file_is_refused_and_left_untouched() {
    let world = World::new();
    std::fs::create_dir_all(world.home()).unwrap();
    for (client, name, text, place) in [
        (
            "codex",
            "config.toml",
            "model = \"x\"\n[mcp_servers.docs\ncommand = \"d\"\n",
            "line 2",
        ),
        (
            "vscode",
            "mcp.json",
            "{\n  \"servers\": {\n    \"a\": {,\n  }\n}\n",
            "line 3",
        ),
        (
            "cursor",
            "cursor.json",
            "{ \"mcpServers\": { \"a\": 1 } } }",
            "line 1",
        ),
        // Gemini CLI strips comments but refuses trailing commas.
        (
            "gemini",
            "settings.json",
            "{\n  // fine\n  \"ui\": {},\n}\n",
            "line 3, column 11",
        ),
        // Claude Code ignores a settings.json with a comment in it.
        (
            "claude-code",
            "claude.json",
            "{\n  // no\n  \"model\": \"opus\"\n}\n",
            "line 2",
        ),
    ] {
        let file = world.home().join(name);
        std::fs::write(&file, text).unwrap();
        let (stdout, stderr) = setup(&world, &[client, "--config", &config_arg(&file)]).fails();
        assert_eq!(stdout, "");
        assert!(
            stderr.starts_with(&format!("bridge-host: cannot read {} as ", file.display())),
            "{stderr}"
        );
        assert!(stderr.contains(place), "{client}: {stderr}");
        assert!(stderr.contains("Nothing was written."), "{stderr}");
        assert!(
            stderr.contains(&format!("then run `bridge-host setup {client} --config")),
            "{stderr}"
        );
        assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "{client}");
    }
    assert!(
        !world
            .home()
            .join(".local/share/session-bridge/claude-code")
            .exists()
    );
}

#[test]
fn a_users_own_bridge_entry_is_not_overwritten() {
    let world = World::new();
    let file = world.home().join(".cursor/mcp.json");
    let mine = "{\n  \"mcpServers\": {\n    \"bridge\": { \"command\": \"bridge-host\", \"args\": [\"mcp\"] } // mine\n  }\n}\n";
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, mine).unwrap();

    let (_, stderr) = setup(&world, &["cursor"]).fails();
    assert!(
        stderr.contains("already has entries that setup did not write"),
        "{stderr}"
    );
    assert!(
        stderr.contains(r#"mcpServers.bridge = {"command":"bridge-host","args":["mcp"]}"#),
        "{stderr}"
    );
    assert!(stderr.contains("Nothing was written."), "{stderr}");
    assert!(
        stderr.contains("run `bridge-host setup cursor --force`"),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);

    // --remove does not take what it did not write.
    let said = setup(&world, &["cursor", "--remove"]).ok();
    assert!(
        said.contains("setup has no record of writing mcpServers.bridge"),
        "{said}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);

    // --force replaces it; --remove puts it back.
    setup(&world, &["cursor", "--force"]).ok();
    assert_eq!(
        jsonc(&std::fs::read_to_string(&file).unwrap())["mcpServers"]["bridge"]["command"],
        exe()
    );
    setup(&world, &["cursor", "--remove"]).ok();
    assert_eq!(std::fs::read_to_string(&file).unwrap(), mine);
}

#[test]
fn remove_after_other_edits_keeps_them_and_what_the_user_changed() {
    let world = World::new();
    let file = world.home().join(".gemini/settings.json");
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    std::fs::write(&file, GEMINI).unwrap();
    setup(&world, &["gemini"]).ok();
    // The user trusts the server (setup leaves that to them) and adds a setting.
    let text = std::fs::read_to_string(&file).unwrap();
    let text = text.replace(
        "\"args\": [\"mcp\"]",
        "\"args\": [\"mcp\"], \"trust\": true",
    );
    let text = text.replace(
        "\"ui\": { \"theme\": \"GitHub\" }",
        "\"ui\": { \"theme\": \"Dracula\" }",
    );
    std::fs::write(&file, &text).unwrap();
    // Still setup's entry: a second run changes nothing.
    assert!(setup(&world, &["gemini"]).ok().contains("nothing changed"));

    let said = setup(&world, &["gemini", "--remove"]).ok();
    assert!(
        said.starts_with(&format!(
            "removed from {}:\n  mcpServers.bridge",
            file.display()
        )),
        "{said}"
    );
    assert!(!said.contains("byte for byte"), "{said}");
    let after = std::fs::read_to_string(&file).unwrap();
    assert_eq!(after, GEMINI.replace("\"GitHub\"", "\"Dracula\""));
}

#[test]
fn links_folders_and_non_text_files_are_refused() {
    let world = World::new();
    std::fs::create_dir_all(world.home()).unwrap();
    let real = world.home().join("real.json");
    std::fs::write(&real, "{}").unwrap();
    let link = world.home().join("link.json");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let (_, stderr) = setup(&world, &["vscode", "--config", &config_arg(&link)]).fails();
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link (to {})",
            link.display(),
            real.display()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("Run it again with --config {}", real.display())),
        "{stderr}"
    );
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "{}");

    let folder: PathBuf = world.home();
    let (_, stderr) = setup(&world, &["vscode", "--config", &config_arg(&folder)]).fails();
    assert!(
        stderr.contains("is a folder, not a regular file. Nothing was written."),
        "{stderr}"
    );

    let binary = world.home().join("binary.json");
    std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
    let (_, stderr) = setup(&world, &["vscode", "--config", &config_arg(&binary)]).fails();
    assert!(
        stderr.contains("is not UTF-8 text. Nothing was written."),
        "{stderr}"
    );
}

/// `program args` run as a client's own CLI in the world's home, with
/// nothing reaching the network; its standard output and standard error
/// (where Gemini CLI prints its list).
fn client(
    world: &World,
    program: &Path,
    args: &[&str],
    env: &[(&str, PathBuf)],
) -> (String, String) {
    let mut command = std::process::Command::new(program);
    command
        .args(args)
        .current_dir(world.home())
        .env_clear()
        .env("HOME", world.home())
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("HTTP_PROXY", "http://127.0.0.1:9");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{} {args:?}: {}",
        program.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    (
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[test]
fn a_codex_config_that_codex_wrote_is_set_up_read_by_codex_and_given_back() {
    let Some(codex) = pinned("codex", "codex", "this setup test") else {
        return;
    };
    let world = World::new();
    let home = world.home().join(".codex");
    std::fs::create_dir_all(&home).unwrap();
    let env = [("CODEX_HOME", home.clone())];
    let codex_says = |args: &[&str]| client(&world, &codex, args, &env).0;
    codex_says(&["mcp", "add", "docs", "--", "docs-mcp", "--stdio"]);
    codex_says(&[
        "mcp",
        "add",
        "--env",
        "TOKEN=abc",
        "search",
        "--",
        "search-mcp",
        "--port",
        "9",
    ]);
    // The user's own lines, which Codex keeps too.
    let file = home.join("config.toml");
    let written = std::fs::read_to_string(&file).unwrap();
    let fixture =
        format!("# my servers, added with codex mcp add\n{written}model = \"o4\" # mine\n");
    let listed = || -> Vec<String> {
        let said = codex_says(&["mcp", "list", "--json"]);
        let list: Value = serde_json::from_str(&said).unwrap_or_else(|e| panic!("{e}: {said}"));
        list.as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap().to_string())
            .collect()
    };
    full_cycle(&world, "codex", &file, &fixture, |_| {
        // Codex reads what setup wrote: its own list has all three.
        assert_eq!(listed(), ["bridge", "docs", "search"]);
        let bridge: Value =
            serde_json::from_str(&codex_says(&["mcp", "get", "bridge", "--json"])).unwrap();
        assert_eq!(bridge["transport"]["command"], exe());
        assert_eq!(
            bridge["transport"]["args"],
            serde_json::json!(["mcp", "--session-from-hooks"])
        );
    });
    assert_eq!(listed(), ["docs", "search"]);
}

#[test]
fn a_gemini_settings_file_that_gemini_wrote_is_set_up_read_by_gemini_and_given_back() {
    let Some(gemini) = pinned("gemini", "gemini", "this setup test") else {
        return;
    };
    let world = World::new();
    std::fs::create_dir_all(world.home()).unwrap();
    let gemini_says = |args: &[&str]| {
        let (stdout, stderr) = client(&world, &gemini, args, &[]);
        stdout + &stderr
    };
    gemini_says(&["mcp", "add", "-s", "user", "docs", "docs-mcp", "--stdio"]);
    gemini_says(&[
        "mcp",
        "add",
        "-s",
        "user",
        "-e",
        "TOKEN=abc",
        "search",
        "search-mcp",
        "--port",
        "9",
    ]);
    let file = world.home().join(".gemini/settings.json");
    let fixture = std::fs::read_to_string(&file).unwrap();
    // Gemini's own list names each server with its command.
    let listed = || gemini_says(&["mcp", "list"]);
    let before = listed();
    assert!(before.contains("docs: docs-mcp --stdio"), "{before}");
    full_cycle(&world, "gemini", &file, &fixture, |_| {
        let after = listed();
        assert!(after.contains("docs: docs-mcp --stdio"), "{after}");
        assert!(after.contains("search: search-mcp --port 9"), "{after}");
        assert!(after.contains(&format!("bridge: {} mcp", exe())), "{after}");
    });
    let after = listed();
    assert!(!after.contains("bridge:"), "{after}");
    assert!(after.contains("search: search-mcp --port 9"), "{after}");
}
