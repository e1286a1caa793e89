//! The `helpline` command line, run as the real binary: config errors, user management, and a
//! database that does not answer.

use crate::helpers::{fresh_database, helpline, run_helpline, write_config};

#[test]
fn check_config_prints_defaults_without_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_helpline(helpline(dir.path()).arg("check-config"), "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("settings file: none (defaults)"), "{out}");
    assert!(out.contains("http_addr     = 127.0.0.1:8080"), "{out}");
    assert!(out.contains("sip_addr      = 127.0.0.1:5080"), "{out}");
    assert!(out.contains("database_url  = sqlite://data/helpline.db"), "{out}");
}

#[test]
fn check_config_names_file_line_and_key_of_a_bad_value() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), "http_addr = \"127.0.0.1:8080\"\nsip_addr = 5080\n");
    let (code, _out, err) = run_helpline(helpline(dir.path()).arg("check-config").env("HELPLINE_CONFIG", &path), "");
    assert_eq!(code, 2, "{err}");
    let expected = format!("error: {}: line 2, column 12: key `sip_addr`", path.display());
    assert!(err.starts_with(&expected), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn check_config_validates_the_menus() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_helpline(helpline(dir.path()).arg("check-config"), "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("config/ivr.toml (") && out.contains("nodes) ok"), "{out}");

    // A menu that starts at a node that does not exist is refused, naming the file and the node.
    let good = std::fs::read_to_string(crate::helpers::repo_path("config/ivr.toml")).unwrap();
    let flow = dir.path().join("ivr.toml");
    std::fs::write(&flow, good.replacen("start = \"language-guess\"", "start = \"nowhere\"", 1)).unwrap();
    let (code, _, err) = run_helpline(helpline(dir.path()).arg("check-config").env("HELPLINE_FLOW_FILE", &flow), "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&flow.display().to_string()) && err.contains("nowhere"), "{err}");

    // Without a flow file the built-in default runs.
    let (code, out, _) = run_helpline(
        helpline(dir.path()).arg("check-config").env("HELPLINE_FLOW_FILE", dir.path().join("none.toml")),
        "",
    );
    assert_eq!(code, 0);
    assert!(out.contains("built-in default flow"), "{out}");
}

#[test]
fn check_config_rejects_a_missing_file_and_a_bad_variable() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) =
        run_helpline(helpline(dir.path()).arg("check-config").env("HELPLINE_CONFIG", dir.path().join("nope.toml")), "");
    assert_eq!(code, 2);
    assert!(err.contains("nope.toml: cannot read the settings file"), "{err}");

    let (code, _, err) = run_helpline(helpline(dir.path()).arg("check-config").env("HELPLINE_LOG_FORMAT", "xml"), "");
    assert_eq!(code, 2);
    assert!(err.starts_with("error: environment variable HELPLINE_LOG_FORMAT:"), "{err}");
}

#[test]
fn check_config_applies_overrides_and_hides_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "s3cr3t-".repeat(6);
    let (code, out, _) = run_helpline(
        helpline(dir.path())
            .arg("check-config")
            .env("HELPLINE_HTTP_ADDR", "127.0.0.1:9999")
            .env("HELPLINE_SECRET", &secret),
        "",
    );
    assert_eq!(code, 0);
    assert!(out.contains("http_addr     = 127.0.0.1:9999"), "{out}");
    assert!(out.contains("overridden by:") && out.contains("HELPLINE_SECRET"), "{out}");
    assert!(!out.contains(&secret), "{out}");
}

#[tokio::test]
async fn user_add_and_list() {
    let db = fresh_database().await;
    let cwd = db.dir.path();
    let add = |args: &[&str], password: &str| {
        let mut cmd = helpline(cwd);
        cmd.args(["user", "add"]).args(args).env("HELPLINE_DATABASE_URL", &db.url);
        run_helpline(&mut cmd, password)
    };
    let (code, out, err) = add(
        &[
            "--name",
            "giulia",
            "--role",
            "operator",
            "--languages",
            "it,fr",
            "--areas",
            "casa,lavoro",
            "--password-stdin",
        ],
        "correct horse battery\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("created operator giulia"), "{out}");

    // The same name again is refused.
    let (code, _, err) = add(&["--name", "giulia", "--role", "admin", "--password-stdin"], "another long password\n");
    assert_eq!(code, 2);
    assert!(err.contains("already exists"), "{err}");

    // Bad input: each gets a clear message and a non-zero exit.
    let (code, _, err) = add(&["--name", "x", "--role", "operator", "--password-stdin"], "short\n");
    assert_eq!(code, 2);
    assert!(err.contains("at least 12 characters"), "{err}");
    let (code, _, err) =
        add(&["--name", "y", "--role", "operator", "--languages", "de", "--password-stdin"], "long enough password\n");
    assert_eq!(code, 2);
    assert!(err.contains("unsupported language \"de\""), "{err}");
    let (code, _, err) =
        add(&["--name", "z", "--role", "operator", "--areas", "house", "--password-stdin"], "long enough password\n");
    assert_eq!(code, 2);
    assert!(err.contains("unknown service area \"house\""), "{err}");
    let (code, _, err) = add(&["--name", "w", "--role", "king", "--password-stdin"], "long enough password\n");
    assert_eq!(code, 2);
    assert!(err.contains("invalid value 'king'"), "{err}");
    let (code, _, err) = add(&["--name", "v", "--role", "operator"], "long enough password\n");
    assert_eq!(code, 2);
    assert!(err.contains("--password-stdin"), "{err}");

    let mut list = helpline(cwd);
    list.args(["user", "list", "--json"]).env("HELPLINE_DATABASE_URL", &db.url);
    let (code, out, err) = run_helpline(&mut list, "");
    assert_eq!(code, 0, "{err}");
    let users: serde_json::Value = serde_json::from_str(&out).unwrap();
    let users = users.as_array().unwrap();
    assert_eq!(users.len(), 1, "only the valid user was created: {out}");
    assert_eq!(users[0]["name"], "giulia");
    assert_eq!(users[0]["role"], "operator");
    assert_eq!(users[0]["languages"], serde_json::json!(["it", "fr"]));
    assert_eq!(users[0]["areas"], serde_json::json!(["casa", "lavoro"]));
    assert!(!out.contains("argon2"), "hashes are never listed");

    let mut table = helpline(cwd);
    table.args(["user", "list"]).env("HELPLINE_DATABASE_URL", &db.url);
    let (_, out, _) = run_helpline(&mut table, "");
    assert!(out.lines().any(|l| l.starts_with("giulia") && l.contains("it,fr") && l.contains("casa,lavoro")), "{out}");

    // The communities' languages are skills like the others…
    let (code, _, err) = add(
        &["--name", "ana", "--role", "operator", "--languages", "ro,uk,zh-CN", "--password-stdin"],
        "long enough password\n",
    );
    assert_eq!(code, 0, "{err}");
    // …and so is a language the flow file adds (here Portuguese), once that file is configured.
    let flow = cwd.join("eleven.toml");
    let good = std::fs::read_to_string(crate::helpers::repo_path("config/ivr.toml")).unwrap();
    let pt = "[[languages]]\ntag = \"pt\"\nvoice = \"pt-br\"\nname = \"português\"\n\n[language_guess]\n";
    std::fs::write(&flow, good.replacen("[language_guess]\n", pt, 1)).unwrap();
    let with_pt = |name: &str, flow_file: Option<&std::path::Path>| {
        let mut cmd = helpline(cwd);
        cmd.args(["user", "add", "--name", name, "--role", "operator", "--languages", "pt", "--password-stdin"])
            .env("HELPLINE_DATABASE_URL", &db.url);
        if let Some(f) = flow_file {
            cmd.env("HELPLINE_FLOW_FILE", f);
        }
        run_helpline(&mut cmd, "long enough password\n")
    };
    let (code, _, err) = with_pt("bia", None);
    assert_eq!(code, 2, "pt is not configured by default: {err}");
    let (code, _, err) = with_pt("bia", Some(&flow));
    assert_eq!(code, 0, "{err}");
    let mut table = helpline(cwd);
    table.args(["user", "list"]).env("HELPLINE_DATABASE_URL", &db.url).env("HELPLINE_FLOW_FILE", &flow);
    let (_, out, _) = run_helpline(&mut table, "");
    assert!(out.lines().any(|l| l.starts_with("bia") && l.contains(" pt ")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("ana") && l.contains("ro,uk,zh")), "{out}");
}

#[test]
fn a_database_that_does_not_answer_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, err) = run_helpline(
        helpline(dir.path())
            .args(["user", "list"])
            .env("HELPLINE_DATABASE_URL", "postgres://nobody:pw@127.0.0.1:1/none"),
        "",
    );
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect to the postgres database at postgres://nobody:***@127.0.0.1:1/none"), "{err}");
    assert!(!err.contains("pw@"), "the password is never printed: {err}");
    assert!(!err.contains("panicked"), "{err}");

    let (code, _, err) =
        run_helpline(helpline(dir.path()).arg("migrate").env("HELPLINE_DATABASE_URL", "mysql://x/y"), "");
    assert_eq!(code, 1);
    assert!(err.contains("unsupported database URL"), "{err}");
}

#[test]
fn the_committed_prompts_pass_the_check() {
    let dir = tempfile::tempdir().unwrap();
    let prompts = crate::helpers::repo_path("prompts");
    let (code, out, err) = run_helpline(helpline(dir.path()).args(["prompts", "check", "--dir"]).arg(&prompts), "");
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("prompts ok:"), "{out}");
}

#[test]
fn prompts_check_reports_a_damaged_prompt() {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("prompts");
    let src = crate::helpers::repo_path("prompts");
    let langs = ["it", "en", "fr", "es", "ru", "zh", "ar", "ro", "sq", "uk"];
    for lang in langs {
        std::fs::create_dir_all(copy.join(lang).join("wav")).unwrap();
        for entry in std::fs::read_dir(src.join(lang)).unwrap() {
            let p = entry.unwrap().path();
            if p.extension().is_some_and(|e| e == "ftl") {
                std::fs::copy(&p, copy.join(lang).join(p.file_name().unwrap())).unwrap();
            }
        }
        for entry in std::fs::read_dir(src.join(lang).join("wav")).unwrap() {
            let p = entry.unwrap().path();
            std::fs::copy(&p, copy.join(lang).join("wav").join(p.file_name().unwrap())).unwrap();
        }
    }
    // Cut the French goodbye short.
    let victim = copy.join("fr/wav/goodbye.wav");
    let bytes = std::fs::read(&victim).unwrap();
    std::fs::write(&victim, &bytes[..bytes.len() / 2]).unwrap();
    let (code, _, err) = run_helpline(helpline(dir.path()).args(["prompts", "check", "--dir"]).arg(&copy), "");
    assert_eq!(code, 1);
    assert!(err.contains("fr/wav/goodbye.wav"), "{err}");

    // A language whose texts lack prompts the flow names is refused before any WAV is read,
    // naming the flow, the folder and the ids.
    let queue = copy.join("sq/queue.ftl");
    let text = std::fs::read_to_string(&queue).unwrap();
    let cut: String = text.lines().filter(|l| !l.starts_with("queue-enter")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&queue, cut).unwrap();
    let (code, _, err) = run_helpline(helpline(dir.path()).args(["prompts", "check", "--dir"]).arg(&copy), "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("language `sq`") && err.contains("sq/") && err.contains("queue-enter"), "{err}");
    // And a language folder that is missing altogether.
    std::fs::write(&queue, text).unwrap();
    std::fs::remove_dir_all(copy.join("uk")).unwrap();
    let (code, _, err) = run_helpline(helpline(dir.path()).args(["prompts", "check", "--dir"]).arg(&copy), "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("language `uk`") && err.contains("missing language folder"), "{err}");
}

#[test]
fn check_config_checks_the_carrier_account() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run_helpline(helpline(dir.path()).arg("check-config"), "");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("twilio_account_sid = (none"), "{out}");

    let (code, out, err) = run_helpline(
        helpline(dir.path())
            .arg("check-config")
            .env("HELPLINE_TWILIO_ACCOUNT_SID", "AC0123")
            .env("HELPLINE_TWILIO_AUTH_TOKEN", "s3cret-token")
            .env("HELPLINE_TWILIO_API_URL", "http://127.0.0.1:9"),
        "",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("twilio_account_sid = AC0123 (API http://127.0.0.1:9"), "{out}");
    assert!(!out.contains("s3cret-token"), "the token is never printed: {out}");

    // An account without its password, or an API URL with a path, stops here, naming the setting.
    let (code, _, err) =
        run_helpline(helpline(dir.path()).arg("check-config").env("HELPLINE_TWILIO_ACCOUNT_SID", "AC0123"), "");
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HELPLINE_TWILIO_AUTH_TOKEN"), "{err}");
    let (code, _, err) = run_helpline(
        helpline(dir.path())
            .arg("check-config")
            .env("HELPLINE_TWILIO_ACCOUNT_SID", "AC0123")
            .env("HELPLINE_TWILIO_AUTH_TOKEN", "t")
            .env("HELPLINE_TWILIO_API_URL", "https://api.twilio.com/2010-04-01"),
        "",
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("HELPLINE_TWILIO_API_URL"), "{err}");
}
