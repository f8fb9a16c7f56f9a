//! The `starling-server` binary, driven as a client library's test suite drives nats-server:
//! start it with `-p -1`, read the port from its log, talk to it over TCP, signal it.
//!
//! Nothing here sleeps to synchronise: every wait is on a log line, a socket read or the
//! process's exit, each bounded by a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_starling-server");
const TIMEOUT: Duration = Duration::from_secs(20);

/// A running broker whose stderr is read line by line on a thread.
struct Broker {
    child: Option<Child>,
    pid: u32,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Broker {
    fn start(args: &[&str]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn starling-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            pid: child.id(),
            child: Some(child),
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a log line containing `needle`; returns it.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line containing {needle:?} ({e:?}); got so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the listening line and for readiness; returns the client port.
    fn wait_ready(&mut self) -> u16 {
        let line = self.wait_for("Listening for client connections on ");
        self.wait_for("Server is ready");
        parse_port(&line)
    }

    /// Waits for the process to exit.
    fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("still running");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(TIMEOUT) {
            Ok(status) => status.expect("wait"),
            Err(_) => {
                let _ = Command::new("kill")
                    .args(["-9", &self.pid.to_string()])
                    .status();
                panic!(
                    "starling-server did not exit; log:\n{}",
                    self.seen.join("\n")
                );
            }
        }
    }

    /// The rest of the log, once the process has exited.
    fn drain(&mut self) -> Vec<String> {
        let deadline = Instant::now() + TIMEOUT;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
        self.seen.clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn parse_port(line: &str) -> u16 {
    let addr = line.rsplit(' ').next().expect("address");
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {line:?}"))
}

/// Runs the binary to completion (for `-v`, `--signal`, `-t`, bad flags).
fn run(args: &[&str]) -> Output {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn starling-server");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(out) => out.expect("output"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("starling-server {args:?} did not exit");
        }
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A raw protocol client.
struct Raw {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Raw {
    fn connect(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream.set_read_timeout(Some(TIMEOUT)).unwrap();
        Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
        }
    }

    fn line(&mut self) -> String {
        let mut line = String::new();
        self.reader.read_line(&mut line).expect("read a line");
        line
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).expect("write");
    }

    /// Reads until EOF; returns what came.
    fn until_eof(&mut self) -> String {
        let mut rest = String::new();
        let _ = self.reader.read_to_string(&mut rest);
        rest
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("starling-cli-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Writes `text` to `conf` and asserts `-c conf -t` fails (exit code 1) saying `wanted`.
fn config_check_fails(conf: &Path, text: impl AsRef<[u8]>, wanted: &str) {
    std::fs::write(conf, text).unwrap();
    let out = run(&["-c", path_str(conf), "-t"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains(wanted), "{}", stderr(&out));
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn random_port_info_and_quit_signal() {
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    assert_ne!(port, 0);
    assert_ne!(port, 4222);

    let mut client = Raw::connect(port);
    let info = client.line();
    assert!(info.starts_with("INFO {"), "{info}");
    assert!(
        info.ends_with("} \r\n"),
        "nats-server ends INFO with a space: {info}"
    );
    assert!(info.contains(&format!("\"port\":{port}")), "{info}");
    assert!(info.contains("\"version\":\"2.11.0\""), "{info}");
    client.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
    assert_eq!(client.line(), "PONG\r\n");

    let out = run(&["--signal", &format!("quit={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let status = broker.wait_exit();
    assert_eq!(status.code(), Some(0));
    let log = broker.drain();
    assert!(
        log.iter()
            .any(|l| l.ends_with("[INF] Trapped \"interrupt\" signal")),
        "{log:#?}"
    );
    assert!(
        log.iter().any(|l| l.ends_with("[INF] Server Exiting..")),
        "{log:#?}"
    );
}

#[test]
fn log_lines_have_nats_servers_shape() {
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1"]);
    let line = broker.wait_for("Listening for client connections on ");
    // [PID] 2006/01/02 15:04:05.000000 [INF] Listening for client connections on 127.0.0.1:PORT
    let prefix = format!("[{}] ", broker.pid);
    assert!(line.starts_with(&prefix), "{line}");
    let rest = &line[prefix.len()..];
    let stamp = &rest[..26];
    assert!(
        stamp.chars().enumerate().all(|(i, c)| match i {
            4 | 7 => c == '/',
            10 => c == ' ',
            13 | 16 => c == ':',
            19 => c == '.',
            _ => c.is_ascii_digit(),
        }),
        "{line}"
    );
    assert!(
        rest[26..].starts_with(" [INF] Listening for client connections on 127.0.0.1:"),
        "{line}"
    );
    // The ready line is nats-server's, verbatim, with nothing after it.
    let ready = broker.wait_for("Server is ready");
    assert!(ready.ends_with("[INF] Server is ready"), "{ready}");

    // -T=false: no time stamp.
    let mut plain = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "-T=false"]);
    let line = plain.wait_for("Listening for client connections on ");
    assert!(
        line.starts_with(&format!(
            "[{}] [INF] Listening for client connections on 127.0.0.1:",
            plain.pid
        )),
        "{line}"
    );
    let starting = plain.seen.first().cloned().unwrap_or_default();
    assert!(
        starting.ends_with("[INF] Starting nats-server"),
        "{starting}"
    );
}

#[test]
fn term_signal_from_pid_file_and_pid_file_removed() {
    let dir = temp_dir("pidfile");
    let pid_file = dir.join("s.pid");
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "-P", path_str(&pid_file)]);
    broker.wait_ready();
    assert_eq!(
        std::fs::read_to_string(&pid_file).unwrap(),
        broker.pid.to_string()
    );

    // `--signal term` with `-P`: the PID comes from the file.
    let out = run(&["--signal", "term", "-P", path_str(&pid_file)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(broker.wait_exit().code(), Some(0));
    assert!(!pid_file.exists(), "the pid file is removed at exit");
    let log = broker.drain();
    assert!(
        log.iter()
            .any(|l| l.contains("Trapped \"terminated\" signal")),
        "{log:#?}"
    );
}

#[test]
fn lame_duck_signal_tells_clients_then_exits() {
    let dir = temp_dir("ldm");
    let conf = dir.join("ldm.conf");
    std::fs::write(&conf, "lame_duck_grace_period: \"200ms\"\n").unwrap();
    let mut broker = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    let mut client = Raw::connect(port);
    client.line();
    client.send("CONNECT {\"verbose\":false,\"protocol\":1}\r\nPING\r\n");
    assert_eq!(client.line(), "PONG\r\n");

    let pid_arg = format!("ldm={}", broker.pid);
    let out = run(&["--signal", &pid_arg]);
    assert!(out.status.success(), "{}", stderr(&out));
    let info = client.line();
    assert!(
        info.starts_with("INFO {") && info.contains("\"ldm\":true"),
        "{info}"
    );
    // The client is closed (EOF, no -ERR) and the broker exits cleanly.
    let rest = client.until_eof();
    assert!(!rest.contains("-ERR"), "{rest}");
    assert_eq!(broker.wait_exit().code(), Some(0));
}

#[test]
fn reload_signal_applies_the_edited_config_file() {
    let dir = temp_dir("reload");
    let conf = dir.join("s.conf");
    let users = |names: &[&str]| {
        let list: Vec<String> = names
            .iter()
            .map(|n| format!("{{user: {n}, password: p}}"))
            .collect();
        format!(
            "listen: 127.0.0.1:-1\nmax_payload: 1KB\nauthorization {{ users: [{}] }}\n",
            list.join(", ")
        )
    };
    std::fs::write(&conf, users(&["gone", "stays"])).unwrap();
    let mut broker = Broker::start(&["-c", path_str(&conf)]);
    let port = broker.wait_ready();
    let mut gone = login(port, Some(("gone", "p")));
    let mut stays = login(port, Some(("stays", "p")));

    // Edit the file: `gone` is removed, `new` added, max_payload raised, debug lines on;
    // then SIGHUP.
    let edited = users(&["stays", "new"]).replace("1KB", "2KB") + "debug: true\n";
    std::fs::write(&conf, &edited).unwrap();
    let out = run(&["--signal", &format!("reload={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    broker.wait_for("Trapped \"hangup\" signal");
    broker.wait_for("Reloaded: max_payload");
    broker.wait_for("Reloaded: authorization users");
    broker.wait_for("Reloaded server configuration");
    broker.wait_for("Reloaded: debug = true");
    assert!(
        gone.until_eof().contains("-ERR 'Authorization Violation'"),
        "the removed user is closed"
    );
    // Debug lines now show: a refused login logs one.
    let mut refused = Raw::connect(port);
    refused.line();
    refused.send("CONNECT {\"verbose\":false,\"user\":\"gone\",\"pass\":\"p\"}\r\n");
    broker.wait_for("[DBG] authorization failed");
    // The raised max_payload applies to a connection opened before the reload.
    let big = "x".repeat(1500);
    stays.send(&format!("SUB big 1\r\nPUB big 1500\r\n{big}\r\nPING\r\n"));
    assert_eq!(stays.line(), "MSG big 1 1500\r\n");
    assert_eq!(stays.line(), format!("{big}\r\n"));
    assert_eq!(stays.line(), "PONG\r\n");
    let mut new = login(port, Some(("new", "p")));
    new.send("PING\r\n");
    assert_eq!(new.line(), "PONG\r\n");

    // A port change needs a restart: refused, logged, and the server goes on as it was.
    std::fs::write(&conf, edited.replace("-1", "4999")).unwrap();
    let out = run(&["--signal", &format!("reload={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = broker.wait_for("Failed to reload server configuration");
    assert!(
        line.contains("config reload not supported for listen"),
        "{line}"
    );
    // A file that does not parse: the same.
    std::fs::write(&conf, "listen: {{{").unwrap();
    let out = run(&["--signal", &format!("reload={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    let line = broker.wait_for("Failed to reload server configuration");
    assert!(line.contains("s.conf"), "the error names the file: {line}");
    new.send("PING\r\n");
    assert_eq!(new.line(), "PONG\r\n");

    let out = run(&["--signal", &format!("quit={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(broker.wait_exit().code(), Some(0));
}

#[test]
fn log_file_gets_the_same_lines_and_is_reopened_on_usr1() {
    let dir = temp_dir("logfile");
    let log = dir.join("s.log");
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "-l", path_str(&log)]);
    broker.wait_ready();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("[INF] Listening for client connections on 127.0.0.1:"),
        "{text}"
    );
    assert!(text.contains("[INF] Server is ready\n"), "{text}");

    std::fs::rename(&log, dir.join("s.log.1")).unwrap();
    let out = run(&["--signal", &format!("reopen={}", broker.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    broker.wait_for("Reopened log file");
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("Reopened log file"), "{text}");
    let out = run(&["--signal", &format!("quit={}", broker.pid)]);
    assert!(out.status.success());
    assert_eq!(broker.wait_exit().code(), Some(0));
}

#[test]
fn config_file_with_flags_overriding() {
    let dir = temp_dir("config");
    let conf = dir.join("s.conf");
    std::fs::write(
        &conf,
        "# a nats-server config\nport: 1\nserver_name: from-file\nmax_payload: 2KB\n\
         authorization {\n  user: alice\n  password: s3cret\n}\n",
    )
    .unwrap();
    let mut broker = Broker::start(&[
        "-c",
        path_str(&conf),
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "-n",
        "from-flag",
    ]);
    let port = broker.wait_ready();
    let mut client = Raw::connect(port);
    let info = client.line();
    assert!(info.contains("\"server_name\":\"from-flag\""), "{info}");
    assert!(info.contains("\"max_payload\":2048"), "{info}");
    assert!(info.contains("\"auth_required\":true"), "{info}");
    client.send("CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"s3cret\"}\r\nPING\r\n");
    assert_eq!(client.line(), "PONG\r\n");
    let mut wrong = Raw::connect(port);
    wrong.line();
    wrong.send("CONNECT {\"verbose\":false,\"user\":\"alice\",\"pass\":\"nope\"}\r\nPING\r\n");
    assert_eq!(wrong.line(), "-ERR 'Authorization Violation'\r\n");
}

#[test]
fn token_flag_requires_auth() {
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "--auth", "t0k"]);
    let port = broker.wait_ready();
    let mut client = Raw::connect(port);
    assert!(client.line().contains("\"auth_required\":true"));
    client.send("CONNECT {\"verbose\":false,\"auth_token\":\"t0k\"}\r\nPING\r\n");
    assert_eq!(client.line(), "PONG\r\n");
}

/// async-nats's and nats.py's test harnesses start every server with `--store_dir DIR`, with or
/// without JetStream: the broker must start and serve as nats-server does.
#[test]
fn store_dir_flag_starts_without_jetstream() {
    let dir = temp_dir("store-dir");
    let flag = format!("-sd={}", path_str(&dir));
    for args in [
        vec!["--store_dir", path_str(&dir), "-p", "-1", "-a", "127.0.0.1"],
        vec![flag.as_str(), "-p", "-1", "-a", "127.0.0.1"],
    ] {
        let mut broker = Broker::start(&args);
        let port = broker.wait_ready();
        let mut client = Raw::connect(port);
        assert!(client.line().starts_with("INFO {"));
        client.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
        assert_eq!(client.line(), "PONG\r\n", "{args:?}");
    }
}

#[test]
fn ports_file() {
    let dir = temp_dir("ports");
    let mut broker = Broker::start(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "--ports_file_dir",
        path_str(&dir),
    ]);
    let port = broker.wait_ready();
    let file = dir.join(format!("starling-server_{}.ports", broker.pid));
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, format!("{{\"nats\":[\"nats://127.0.0.1:{port}\"]}}"));
    let out = run(&["--signal", &format!("quit={}", broker.pid)]);
    assert!(out.status.success());
    assert_eq!(broker.wait_exit().code(), Some(0));
    assert!(!file.exists());
}

#[test]
fn port_in_use_is_an_error_naming_the_listener() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = run(&["-a", "127.0.0.1", "-p", &port]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    // nats-server: `[FTL] Error listening on port: 127.0.0.1:4222, "listen tcp ...: bind: ..."`.
    assert!(
        err.contains("[FTL] Error listening on client port: 127.0.0.1:") && err.contains(&port),
        "{err}"
    );
}

#[test]
fn unknown_flag_is_an_error_naming_it() {
    let out = run(&["--bogus"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("flag provided but not defined: -bogus"),
        "{}",
        stderr(&out)
    );
    let out = run(&["-p"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("flag needs an argument: -p"),
        "{}",
        stderr(&out)
    );
    let out = run(&["-js=maybe"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("invalid boolean value \"maybe\" for -js: parse error"),
        "{}",
        stderr(&out)
    );
}

/// Sends `$JS.API.INFO` (with `SUB`/`PING` first, so the reply's subscription is in place)
/// and returns the reply's payload.
fn js_account_info(client: &mut Raw) -> String {
    client.send("SUB _INBOX.js 1\r\nPING\r\n");
    assert_eq!(client.line(), "PONG\r\n");
    client.send("PUB $JS.API.INFO _INBOX.js 0\r\n\r\n");
    let msg = client.line();
    assert!(msg.starts_with("MSG _INBOX.js 1 "), "{msg}");
    let n: usize = msg.trim_end().rsplit(' ').next().unwrap().parse().unwrap();
    String::from_utf8(client.payload(n)).unwrap()
}

#[test]
fn jetstream_flags_start_jetstream() {
    let dir = temp_dir("jetstream");
    let sd = format!("-sd={}", path_str(&dir));
    for args in [
        vec!["-p", "-1", "-a", "127.0.0.1", "-js", "-sd", path_str(&dir)],
        vec!["-p", "-1", "-a", "127.0.0.1", "--jetstream", sd.as_str()],
        vec!["--store_dir", path_str(&dir), "--jetstream", "-p", "-1"],
    ] {
        let mut broker = Broker::start(&args);
        let port = broker.wait_ready();
        assert!(
            !broker.seen.iter().any(|l| l.contains("[WRN]")),
            "{args:?}: {:#?}",
            broker.seen
        );
        let mut client = Raw::connect(port);
        let info = client.line();
        assert!(info.contains("\"jetstream\":true"), "{args:?}: {info}");
        client.send("CONNECT {\"verbose\":false}\r\n");
        let reply = js_account_info(&mut client);
        assert!(
            reply.contains("\"type\":\"io.nats.jetstream.api.v1.account_info_response\""),
            "{args:?}: {reply}"
        );
        assert!(!reply.contains("\"error\""), "{args:?}: {reply}");
        // As nats-server: `<store_dir>/jetstream` exists once the server is ready.
        assert!(dir.join("jetstream").is_dir(), "{args:?}");
    }
    // A store directory that is a file: nats-server's fatal error, and exit status 1.
    let file = dir.join("a-file");
    std::fs::write(&file, "").unwrap();
    let out = run(&["-p", "-1", "-js", "-sd", path_str(&file)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("[FTL]")
            && stderr(&out).contains("storage directory is not a directory"),
        "{}",
        stderr(&out)
    );
    // Without -js, no JetStream: INFO says so and nothing answers the API.
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "-sd", path_str(&dir)]);
    let port = broker.wait_ready();
    let mut client = Raw::connect(port);
    assert!(!client.line().contains("\"jetstream\":true"));
}

#[test]
fn jetstream_without_a_store_dir_warns_and_starts() {
    let mut broker = Broker::start(&["-p", "-1", "-a", "127.0.0.1", "-js"]);
    let port = broker.wait_ready();
    assert!(
        broker
            .seen
            .iter()
            .any(|l| l.contains("[WRN]") && l.contains("no store directory")),
        "{:#?}",
        broker.seen
    );
    let mut client = Raw::connect(port);
    assert!(client.line().contains("\"jetstream\":true"));
    client.send("CONNECT {\"verbose\":false}\r\n");
    let reply = js_account_info(&mut client);
    assert!(
        reply.contains("\"type\":\"io.nats.jetstream.api.v1.account_info_response\""),
        "{reply}"
    );
}

#[test]
fn jetstream_from_the_config_file() {
    let dir = temp_dir("jetstream-conf");
    let conf = dir.join("js.conf");
    std::fs::write(
        &conf,
        format!(
            "jetstream {{\n  store_dir: \"{}\"\n  max_mem: 64MiB\n  max_file: 1GiB\n  \
             sync_interval: always\n  domain: hub\n}}\n\
             accounts {{\n  A: {{ jetstream: enabled, users: [{{user: a, password: a}}] }}\n  \
             B: {{ users: [{{user: b, password: b}}] }}\n}}\n",
            path_str(&dir.join("store"))
        ),
    )
    .unwrap();
    let out = run(&["-c", path_str(&conf), "-t"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut broker = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    // A has JetStream, in the domain.
    let mut a = login(port, Some(("a", "a")));
    let reply = js_account_info(&mut a);
    assert!(reply.contains("account_info_response"), "{reply}");
    assert!(reply.contains("\"domain\":\"hub\""), "{reply}");
    // B does not: nothing answers its API.
    let mut b = login(port, Some(("b", "b")));
    b.send("SUB _INBOX.js 1\r\nPUB $JS.API.INFO _INBOX.js 0\r\n\r\nPING\r\n");
    assert_eq!(b.line(), "PONG\r\n");
    assert!(dir.join("store").is_dir());
}

#[test]
fn config_check_reports_jetstream_errors() {
    let dir = temp_dir("jetstream-check");
    let conf = dir.join("js.conf");
    config_check_fails(
        &conf,
        "port: 4222\njetstream {\n  max_mem: \"lots\"\n}\n",
        "js.conf:3:2: invalid value for \"jetstream.max_mem\"",
    );
    config_check_fails(
        &conf,
        "jetstream {\n  store_dir: /tmp\n  cipher: aes\n}\n",
        "js.conf:3:2: \"jetstream.cipher\" is not supported by starling-server yet (JetStream encryption)",
    );
    config_check_fails(
        &conf,
        "jetstream {\n  sync_interval: \"sometimes\"\n}\n",
        "js.conf:2:2: invalid value for \"jetstream.sync_interval\"",
    );
    config_check_fails(&conf, "jetstream: maybe\n", "js.conf:1:0:");
    // A valid block without a store dir: valid, with the warning.
    std::fs::write(&conf, "jetstream { max_mem: 1G, max_buffered_msgs: 10 }\n").unwrap();
    let out = run(&["-c", path_str(&conf), "-t"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("no store directory"), "{err}");
    assert!(
        err.contains("\"jetstream.max_buffered_msgs\" ignored"),
        "{err}"
    );
    assert!(err.contains("is valid"), "{err}");
}

#[test]
fn version_and_help() {
    let out = run(&["-v"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text,
        format!(
            "starling-server: v{} (nats 2.11.0)\n",
            env!("CARGO_PKG_VERSION")
        )
    );
    let out = run(&["--help"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("Usage: starling-server [options]"));
}

#[test]
fn test_config_flag() {
    let dir = temp_dir("test-config");
    let good = dir.join("good.conf");
    std::fs::write(&good, "port: 4333\nmax_payload: 2MB\n").unwrap();
    let out = run(&["-t", "-c", path_str(&good)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("is valid"), "{}", stderr(&out));

    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "port: 4333\nprot: 3\n").unwrap();
    let out = run(&["-t", "-c", path_str(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("bad.conf:2:0: unknown field \"prot\""),
        "{}",
        stderr(&out)
    );

    let out = run(&["-t"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("must specify [-c, --config]"),
        "{}",
        stderr(&out)
    );

    // A bad config file stops the server from starting, too.
    let out = run(&["-c", path_str(&bad)]);
    assert_eq!(out.status.code(), Some(1));
    let out = run(&["-c", path_str(&dir.join("missing.conf"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("missing.conf"), "{}", stderr(&out));
}

#[test]
fn signal_errors() {
    let out = run(&["--signal", "bogus=1"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("unknown signal \"bogus\""),
        "{}",
        stderr(&out)
    );
    let out = run(&["--signal", "quit=/surely/not/here.pid"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read pid file"),
        "{}",
        stderr(&out)
    );
}

/// `GET path` over HTTP/1.0 on a plain socket: (status line, body).
fn http_get(port: u16, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to the monitor");
    s.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).expect("HTTP reply");
    let (head, body) = reply.split_once("\r\n\r\n").expect("headers end");
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

#[test]
fn monitoring_port_flag() {
    let mut broker = Broker::start(&["-a", "127.0.0.1", "-p", "-1", "-m", "-1"]);
    // As nats-server: the monitor's line comes before the client listener's.
    let line = broker.wait_for("Starting http monitor on ");
    let http = parse_port(&line);
    let port = broker.wait_ready();
    let (status, body) = http_get(http, "/varz");
    assert_eq!(status, "HTTP/1.0 200 OK", "{body}");
    assert!(body.contains(&format!("\"port\": {port},")), "{body}");
    assert!(body.contains(&format!("\"http_port\": {http},")), "{body}");
    assert_eq!(http_get(http, "/healthz").1, r#"{"status":"ok"}"#);
    drop(broker);
}

/// Reads the port of a `Listening for route connections on HOST:PORT` line, after the client
/// listener's line and before readiness; returns (client port, cluster port).
fn wait_ready_with_cluster(broker: &mut Broker) -> (u16, u16) {
    let client = parse_port(&broker.wait_for("Listening for client connections on "));
    let cluster = parse_port(&broker.wait_for("Listening for route connections on "));
    broker.wait_for("Server is ready");
    (client, cluster)
}

impl Raw {
    /// Reads `n` bytes and the CRLF after them (a message payload).
    fn payload(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n + 2];
        self.reader.read_exact(&mut buf).expect("read a payload");
        assert_eq!(&buf[n..], b"\r\n");
        buf.truncate(n);
        buf
    }
}

#[test]
fn two_processes_form_a_cluster_and_route_a_request_and_its_reply() {
    // A requires route credentials and names the cluster; "-1" picks a free cluster port.
    let mut a = Broker::start(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "-n",
        "A",
        "--cluster",
        "nats://ruser:rpass@127.0.0.1:-1",
        "--cluster_name",
        "it",
    ]);
    let (a_port, a_cluster) = wait_ready_with_cluster(&mut a);
    assert_ne!(a_cluster, 0);

    // The route port asks for credentials and refuses wrong ones, as nats-server's does.
    let mut intruder = Raw::connect(a_cluster);
    let info = intruder.line();
    assert!(info.contains("\"auth_required\":true"), "{info}");
    assert!(info.contains("\"cluster\":\"it\""), "{info}");
    intruder.send("CONNECT {\"user\":\"ruser\",\"pass\":\"nope\",\"name\":\"X\"}\r\n");
    assert_eq!(intruder.line(), "-ERR 'Authorization Violation'\r\n");

    // B has no cluster name (it adopts A's) and seeds A with the credentials in the URL.
    let seed = format!("nats://ruser:rpass@127.0.0.1:{a_cluster}");
    let mut b = Broker::start(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "-n",
        "B",
        "--cluster",
        "nats://127.0.0.1:-1",
        "--routes",
        &seed,
    ]);
    let (b_port, _) = wait_ready_with_cluster(&mut b);
    b.wait_for("Route connection created");
    a.wait_for("Route connection created");

    // A subscriber on B; PONG means B has registered the subscription (and sent RS+ to A).
    let mut sub = Raw::connect(b_port);
    let info = sub.line();
    assert!(info.contains("\"cluster\":\"it\""), "{info}");
    assert!(info.contains(&format!("127.0.0.1:{a_port}")), "{info}");
    sub.send("CONNECT {\"verbose\":false}\r\nSUB svc.echo 1\r\nPING\r\n");
    assert_eq!(sub.line(), "PONG\r\n");

    // A requester on A with no_responders: until A has B's interest, a request comes back
    // at once as a 503 status; once the PONG follows without one, the request went to B.
    let mut req = Raw::connect(a_port);
    req.line();
    req.send(
        "CONNECT {\"verbose\":false,\"headers\":true,\"no_responders\":true}\r\n\
         SUB _INBOX.probe 9\r\nPING\r\n",
    );
    assert_eq!(req.line(), "PONG\r\n");
    let deadline = Instant::now() + TIMEOUT;
    let mut no_responders = 0;
    loop {
        assert!(
            Instant::now() < deadline,
            "A never learned of B's subscriber ({no_responders} probes)"
        );
        req.send("PUB svc.echo _INBOX.probe 5\r\nhello\r\nPING\r\n");
        let line = req.line();
        if line == "PONG\r\n" {
            break;
        }
        // HMSG _INBOX.probe 9 <hdr> <total>: the 503.
        let total: usize = line
            .split_whitespace()
            .last()
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected {line:?}"));
        assert!(line.starts_with("HMSG _INBOX.probe 9 "), "{line}");
        let status = req.payload(total);
        assert!(status.starts_with(b"NATS/1.0 503"), "{status:?}");
        assert_eq!(req.line(), "PONG\r\n");
        no_responders += 1;
    }

    // The request reached B exactly once; the reply crosses back to A.
    assert_eq!(sub.line(), "MSG svc.echo 1 _INBOX.probe 5\r\n");
    assert_eq!(sub.payload(5), b"hello");
    sub.send("PUB _INBOX.probe 5\r\nhello\r\nPING\r\n");
    assert_eq!(sub.line(), "PONG\r\n");
    assert_eq!(req.line(), "MSG _INBOX.probe 9 5\r\n");
    assert_eq!(req.payload(5), b"hello");

    // B leaving is seen by A.
    let out = run(&["--signal", &format!("quit={}", b.pid)]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(b.wait_exit().code(), Some(0));
    a.wait_for("Route connection closed");
}

#[test]
fn cluster_flag_errors_stop_the_binary() {
    let out = run(&["--routes", "nats://127.0.0.1:6222"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("solicited routes require cluster capabilities, e.g. --cluster"),
        "{}",
        stderr(&out)
    );
    let out = run(&["--cluster", "nats://ruser@127.0.0.1:6222"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("expected cluster password to be set"),
        "{}",
        stderr(&out)
    );
    // A cluster port in use is an error naming the cluster listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = run(&[
        "-a",
        "127.0.0.1",
        "-p",
        "-1",
        "--cluster",
        &format!("nats://127.0.0.1:{port}"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("cluster") && err.contains(&port.to_string()),
        "{err}"
    );
}

/// A raw client that connected as `user` (CONNECT + PING answered).
fn login(port: u16, user: Option<(&str, &str)>) -> Raw {
    let mut c = Raw::connect(port);
    assert!(c.line().starts_with("INFO {"));
    let creds = user.map_or(String::new(), |(u, p)| {
        format!(",\"user\":\"{u}\",\"pass\":\"{p}\"")
    });
    c.send(&format!("CONNECT {{\"verbose\":false{creds}}}\r\nPING\r\n"));
    assert_eq!(c.line(), "PONG\r\n", "{user:?} logs in");
    c
}

/// nats-server's accounts block in the config file: users land in their accounts, accounts are
/// isolated, an exported stream reaches its importer under the prefix, and a client without
/// credentials is the `no_auth_user`.
#[test]
fn accounts_from_the_config_file() {
    let dir = temp_dir("accounts");
    let conf = dir.join("accounts.conf");
    std::fs::write(
        &conf,
        r#"
accounts {
  ORDERS: { users: [{user: orders, password: po}], exports: [{stream: "events.>"}] }
  SHOP: {
    users: [{user: shop, password: ps}]
    imports: [{stream: {account: ORDERS, subject: "events.>"}, prefix: "o"}]
  }
}
authorization { users: [{user: g, password: pg}] }
no_auth_user: shop
"#,
    )
    .unwrap();
    let mut broker = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    let mut info = Raw::connect(port);
    assert!(
        !info.line().contains("\"auth_required\":true"),
        "no_auth_user: clients need no credentials"
    );

    let mut shop = login(port, None); // the no_auth_user: account SHOP
    shop.send("SUB o.events.> 1\r\nSUB events.> 2\r\nPING\r\n");
    assert_eq!(shop.line(), "PONG\r\n");
    let mut global = login(port, Some(("g", "pg")));
    global.send("SUB events.> 1\r\nPING\r\n");
    assert_eq!(global.line(), "PONG\r\n");
    let mut orders = login(port, Some(("orders", "po")));
    orders.send("PUB events.created 3\r\nabc\r\nPING\r\n");
    assert_eq!(orders.line(), "PONG\r\n");
    // SHOP gets it under the prefix (and not on its own `events.>`), $G not at all.
    shop.send("PING\r\n");
    assert_eq!(shop.line(), "MSG o.events.created 1 3\r\n");
    assert_eq!(shop.line(), "abc\r\n");
    assert_eq!(shop.line(), "PONG\r\n");
    global.send("PING\r\n");
    assert_eq!(global.line(), "PONG\r\n", "nothing reaches $G");

    let mut wrong = Raw::connect(port);
    wrong.line();
    wrong.send("CONNECT {\"verbose\":false,\"user\":\"orders\",\"pass\":\"nope\"}\r\nPING\r\n");
    assert_eq!(wrong.line(), "-ERR 'Authorization Violation'\r\n");
}

/// `-t` checks how the accounts fit together, with nats-server's words.
#[test]
fn config_check_reports_account_errors() {
    let dir = temp_dir("accounts-t");
    let conf = dir.join("bad.conf");
    config_check_fails(
        &conf,
        "accounts {\n  A: { imports: [{stream: {account: B, subject: x}}] }\n}\n",
        "\"B\" account not defined for stream import",
    );
    config_check_fails(
        &conf,
        "accounts {\n  $G: {}\n}\n",
        "bad.conf:2:2: invalid value for \"accounts\": \"$G\" is a Reserved Account",
    );
}

#[test]
fn permissions_from_the_config_file() {
    // nats.py's own test config (nats/tests/conf/no_auth_user.conf).
    let dir = temp_dir("permissions");
    let conf = dir.join("no_auth_user.conf");
    std::fs::write(
        &conf,
        r#"
port: 4555
accounts {
  a {
    users = [ { user: 'foo', pass: 'foo',
      permissions: {
        subscribe: { allow: ["foo", "_INBOX.>"], deny: ["bar"] }
        publish: { allow: ["foo", "_INBOX.>"], deny: ["bar"] }
      }
    }]
  }
  b {
    users = [ { user: 'bar', pass: 'bar',
      permissions: {
        subscribe: { allow: ["bar"], deny: [">"] }
        publish: { allow: ["bar"], deny: [">"] }
      }
    }]
  }
}
no_auth_user = "foo"
"#,
    )
    .unwrap();
    let out = run(&["-c", path_str(&conf), "-t"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The flags override its fixed port.
    let mut broker = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    let mut bar = login(port, Some(("bar", "bar")));
    bar.send("SUB foo 1\r\nPUB bar 1\r\nx\r\nPING\r\n");
    assert_eq!(
        bar.line(),
        "-ERR 'Permissions Violation for Subscription to \"foo\"'\r\n"
    );
    assert_eq!(
        bar.line(),
        "-ERR 'Permissions Violation for Publish to \"bar\"'\r\n"
    );
    assert_eq!(bar.line(), "PONG\r\n");
    let mut foo = login(port, None);
    foo.send("SUB foo 1\r\nPUB foo 2\r\nhi\r\nPUB bar 1\r\nx\r\nPING\r\n");
    assert_eq!(foo.line(), "MSG foo 1 2\r\n");
    assert_eq!(foo.line(), "hi\r\n");
    assert_eq!(
        foo.line(),
        "-ERR 'Permissions Violation for Publish to \"bar\"'\r\n"
    );
    assert_eq!(foo.line(), "PONG\r\n");
}

/// Every form of nats-server's permissions loads: allow and deny lists, a queue-qualified
/// subscribe entry, an `allow_responses` map, account and authorization defaults.
#[test]
fn config_check_accepts_permissions() {
    let dir = temp_dir("permissions-t");
    let conf = dir.join("perms.conf");
    std::fs::write(
        &conf,
        r#"
accounts {
  ORDERS: {
    default_permissions: { sub: "orders.>" }
    users: [
      { user: worker, password: w,
        permissions: {
          publish: { allow: ["orders.>", "_INBOX.>"], deny: ["orders.secret", "orders.admin.>"] }
          subscribe: { allow: ["orders.*", "foo v1"], deny: "orders.secret" }
          allow_responses: { max: 5, expires: "1s" }
        }
      }
      { user: reader, password: r }
    ]
  }
}
authorization {
  default_permissions: {
    pub: "public.>"
    sub: ["public.>", "_INBOX.>"]
    allow_responses: true
  }
  users: [{user: g, password: pg, permission: { publish_allow_responses: { max_msgs: -1, ttl: "-1s" } }}]
}
"#,
    )
    .unwrap();
    let out = run(&["-c", path_str(&conf), "-t"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
}

/// A bad key inside permissions fails `-t` with nats-server's words and where it is; so does a
/// subject the server crate refuses.
#[test]
fn config_check_reports_permission_errors() {
    let dir = temp_dir("permissions-bad");
    let conf = dir.join("bad.conf");
    config_check_fails(&conf, "accounts {\n  A: {\n    users: [{user: u, password: p,\n      permissions: { publish: { allow: [\"a\"] }, subscribe: { alow: [\"b\"] } }\n    }]\n  }\n}\n", "bad.conf:4:61: invalid value for \"accounts.A.users.permissions.subscribe.alow\": \
             Unknown field name \"alow\" parsing subject permissions, only 'allow' or 'deny' are permitted");
    config_check_fails(&conf, "authorization {\n  permissions: { publsh: \"a\" }\n}\n", "bad.conf:2:17: invalid value for \"authorization.permissions.publsh\": Unknown field \"publsh\" parsing permissions");
    config_check_fails(&conf, "authorization {\n  users: [{user: u, password: p, permissions: { sub: [\"foo bar baz\"] }}]\n}\n", "bad.conf:2:33: invalid value for \"authorization.users.permissions\": subject \"foo bar baz\" is not a valid subject");
}

#[test]
fn bcrypt_passwords_from_the_config_file() {
    let dir = temp_dir("bcrypt");
    let conf = dir.join("bcrypt.conf");
    // Unquoted, as nats-server's docs write them: `$2a$...` is a hash, not a variable.
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    std::fs::write(
        &conf,
        format!("authorization {{ users: [{{user: u, password: {hash}}}] }}\n"),
    )
    .unwrap();
    let mut broker = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    let port = broker.wait_ready();
    let mut ok = login(port, Some(("u", "s3cret")));
    ok.send("PING\r\n");
    assert_eq!(ok.line(), "PONG\r\n");
    let mut bad = Raw::connect(port);
    bad.line();
    bad.send("CONNECT {\"verbose\":false,\"user\":\"u\",\"pass\":\"nope\"}\r\nPING\r\n");
    assert_eq!(bad.line(), "-ERR 'Authorization Violation'\r\n");

    // A plaintext password gets nats-server's warning.
    std::fs::write(
        &conf,
        "authorization { users: [{user: u, password: plain}] }\n",
    )
    .unwrap();
    let mut plain = Broker::start(&["-c", path_str(&conf), "-p", "-1", "-a", "127.0.0.1"]);
    plain.wait_for("Plaintext passwords detected, use nkeys or bcrypt");
}

/// `--tls --tlscert --tlskey` as nats.py's harness passes them: the plaintext INFO says TLS is
/// required and the log says so; files that are not there, or names rustls lacks, are refused
/// with the key and its line.
#[test]
fn tls_from_flags_and_the_config_file() {
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&cert, pair.cert.pem()).unwrap();
    std::fs::write(&key, pair.key_pair.serialize_pem()).unwrap();

    let mut broker = Broker::start(&[
        "-p",
        "-1",
        "-a",
        "127.0.0.1",
        "--tls",
        "--tlscert",
        path_str(&cert),
        "--tlskey",
        path_str(&key),
    ]);
    let line = broker.wait_for("Listening for client connections on ");
    broker.wait_for("TLS required for client connections");
    broker.wait_for("Server is ready");
    let mut stream = TcpStream::connect(("127.0.0.1", parse_port(&line))).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut info = [0u8; 4096];
    let n = stream.read(&mut info).unwrap();
    let info = String::from_utf8_lossy(&info[..n]);
    assert!(info.contains(r#""tls_required":true"#), "{info}");

    let out = run(&["--tls", "--tlskey", path_str(&key), "-p", "-1"]);
    assert!(
        stderr(&out).contains("TLS Server certificate must be present and valid"),
        "{}",
        stderr(&out)
    );
    let conf = dir.join("tls.conf");
    config_check_fails(&conf, format!(
            "tls {{\n  cert_file: {:?}\n  key_file: {:?}\n  cipher_suites: [TLS_RSA_WITH_AES_128_CBC_SHA]\n}}\n",
            cert, key
        ), "TLS_RSA_WITH_AES_128_CBC_SHA is not supported");
    config_check_fails(&conf, "tls {\n  cert_file: \"missing.pem\"\n  key_file: \"k\"\n  colour: blue\n}\n", "tls.conf:4:2: invalid value for \"tls.colour\": error parsing tls config, unknown field \"colour\"");
}

/// Operator mode from nats.py's own config (v1 JWTs, `resolver: MEMORY`, `resolver_preload`),
/// with the operator inline or as a decorated file: a client that signs the nonce with its
/// user's seed gets in; configured users beside an operator, or another resolver, are
/// refused by `-t`.
#[test]
fn operator_mode_from_the_config_file() {
    let data = concat!(env!("CARGO_MANIFEST_DIR"), "/../server/tests/data/jwt/");
    let inline = format!("{data}resolver_preload.conf");
    let text = std::fs::read_to_string(&inline).unwrap();
    let dir = temp_dir("operator");
    let from_file = dir.join("op-file.conf");
    let preload = &text[text.find("resolver").unwrap()..];
    std::fs::write(&from_file, format!("operator: \"{data}op.jwt\"\n{preload}")).unwrap();
    let creds = std::fs::read_to_string(format!("{data}foo-user.creds")).unwrap();
    let mut lines = creds.lines().map(str::trim);
    let jwt = lines.find(|l| l.starts_with("eyJ")).unwrap().to_string();
    let seed = lines.find(|l| l.starts_with("SU")).unwrap();
    let key = nkeys::KeyPair::from_seed(seed).unwrap();

    for conf in [inline.as_str(), path_str(&from_file)] {
        let out = run(&["-c", conf, "-t"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let mut broker = Broker::start(&["-c", conf, "-p", "-1", "-a", "127.0.0.1"]);
        let port = broker.wait_ready();
        let mut c = Raw::connect(port);
        let info = c.line();
        let nonce = info
            .split("\"nonce\":\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .expect("INFO carries a nonce");
        let sig = data_encoding::BASE64URL_NOPAD.encode(&key.sign(nonce.as_bytes()).unwrap());
        c.send(&format!(
            "CONNECT {{\"verbose\":false,\"jwt\":\"{jwt}\",\"sig\":\"{sig}\"}}\r\nSUB x 1\r\nPUB x 2\r\nok\r\nPING\r\n"
        ));
        assert_eq!(c.line(), "MSG x 1 2\r\n", "{conf}");
        assert_eq!(c.line(), "ok\r\n");
        assert_eq!(c.line(), "PONG\r\n");
        let mut anonymous = Raw::connect(port);
        anonymous.line();
        anonymous.send("CONNECT {\"verbose\":false}\r\nPING\r\n");
        assert_eq!(anonymous.line(), "-ERR 'Authorization Violation'\r\n");
    }

    let bad = dir.join("bad.conf");
    config_check_fails(
        &bad,
        format!("{text}\nauthorization {{ users: [{{user: u, password: p}}] }}\n"),
        "operators do not allow users to be configured directly",
    );
    config_check_fails(
        &bad,
        text.replace(
            "resolver = MEMORY",
            "resolver = URL(\"http://localhost:9090/jwt/v1/accounts/\")",
        ),
        "account resolvers other than MEMORY",
    );
}
