//! `starling-bench`: whole-server load figures for any NATS server, and Starling against
//! nats-server side by side. `starling-bench help` lists the flags.

use std::io::Write;
use std::process::ExitCode;

use starling_benches::args::Args;
use starling_benches::compare::{self, CompareConfig};
use starling_benches::conn::with_tls;
use starling_benches::report::run_table;
use starling_benches::{run, BenchError, Config, Result, Scenario};

const USAGE: &str = "\
starling-bench: load tool for NATS servers

USAGE:
  starling-bench run --scenario NAME [--url nats://127.0.0.1:4222] [flags]
  starling-bench compare [--scenarios all|a,b,c] [--rounds 3] [flags]
  starling-bench config --scenario accounts [--accounts N]   print the config file the
                        scenario's server needs (for `run` against a server you start)
  starling-bench recover [--msgs N] [--size B] [--rounds 3] [--cold]
                        a file stream of N messages on Starling and on nats-server: disk
                        per message after kill -9, and the time from the restart's spawn
                        to STREAM.INFO answering (--cold: page cache dropped first, root)
  starling-bench inprocess [--msgs N] [--size B] [--k K] [--requests N] [--rounds 3]
                         [--payloads owned|shared|static]
                        one embedded broker: pub->sub, fan-out and request/reply through
                        the in-process client and over TCP loopback, with ratios

SCENARIOS:
  pub pubsub pubsub-headers fanout fanin queue wildcard reqrep subs route accounts
  handshake (not part of `all`: name it)
  js-pub js-pub-sync js-consume js-replay kv-put kv-get (JetStream; not part of `all`;
  `js` names them all)

  accounts: N accounts (config file with users u<i>/p<i>), one client per account making
  M subscriptions; reports server RSS growth per account and per subscription.

  msgs/s counts deliveries (fanout and wildcard: K per publish) from the first publish
  to the last delivery; cpu/msg is server CPU (user+system) per delivery. Every message
  carries a sequence number: loss, duplication or reordering fails the run (exit 1).

  handshake: K connector threads open connections one after another, each doing the
  full handshake (TCP connect, INFO, TLS under --tls, CONNECT, PING/PONG) and closing it;
  reports connects/s and server CPU per connection.

  JetStream (the server needs -js; `compare` starts each server with -js -sd and a fresh
  store directory, or for js-pub-sync a config file with `jetstream { store_dir: ..,
  sync_interval: always }`). Each round creates the stream through $JS.API.STREAM.CREATE
  and deletes it at the end. Every reply is checked; a lost, repeated or reordered
  acknowledgement, delivery or value fails the run.
  js-pub        publishes to stream BENCH (bench.js.>) with at most --in-flight awaiting
                their PubAck for --duration; publish i must get seq i+1, in order.
                Reports acked publishes/s and server CPU per publish.
  js-pub-sync   js-pub on a file stream with the server's sync_interval: always.
  js-consume    pre-fills --msgs (not timed), then a durable pull consumer (ack explicit,
                max_ack_pending 4 x batch) fetches batches of --batch (expires 5s, two
                requests in flight) and acks each with +ACK; stream seqs 1..N in order,
                each delivered once; the consumer's ack floor must reach N.
  js-replay     the same with an ephemeral ack_policy none consumer, --replay-batch.
  kv-put        KV_bench ($KV.bench.>, max_msgs_per_subject 1, allow_direct): puts over
                --keys keys, --in-flight awaiting their PubAck. Reports puts/s.
  kv-get        every key put once (not timed), then $JS.API.DIRECT.GET.KV_bench.<subject>
                with --in-flight outstanding; subject, sequence and value are checked.

COMMON FLAGS:
  --size BYTES          payload size, 16 .. 64KiB (default 128)
  --duration SECS       publish phase (default 2)
  --drain-timeout SECS  wait for the rest after publishing (default 10)
  --k N                 fanout/fanin/queue/wildcard width, handshake connector
                        threads (default 4)
  --concurrency N       reqrep requests in flight (default 1)
  --subs N              subscriptions for `subs` (default 100000)
  --subjects N          distinct subjects for `wildcard` (default 1000)
  --accounts N          accounts for `accounts` (default 1000)
  --subs-per-account N  subscriptions per account for `accounts` (default 10)
  --json FILE           write JSON lines to FILE (default: stdout after the table)
  --max-msgs N          stop each publisher after N messages (also js-pub, kv-put, kv-get)
  --in-flight N         JetStream publishes / direct gets awaiting a reply (default 256)
  --storage file|memory JetStream stream storage (default file; js-pub-sync: file)
  --msgs N              messages pre-filled for js-consume and js-replay (default 200000)
  --batch N             js-consume pull batch (default 500)
  --replay-batch N      js-replay pull batch (default 10000)
  --keys N              kv-put / kv-get keys (default 1000)

RUN FLAGS:
  --url URL             server (default nats://127.0.0.1:4222)
  --url2 URL            second server of the cluster (route)
  --pid PID, --pid2 PID server pids, for CPU and RSS figures
  --label NAME          server name in the report
  --tlscacert FILE      connect with TLS (nats:// URLs become tls://), trusting the
                        certificates in the PEM file FILE (a CA or the server's own)

COMPARE FLAGS:
  --scenarios LIST      `all` or a comma-separated list (default pubsub)
  --rounds N            rounds, alternating the servers (default 3)
  --starling-bin PATH   default: starling-server next to this binary, else
                        target/release/starling-server
  --nats-bin PATH       default: nats-server on PATH
  --account NAME        every server runs with its clients in account NAME (a config file
                        with the account and no_auth_user) instead of the global account
  --versus-global       compare Starling in --account (default A) with Starling in the
                        global account, instead of Starling with nats-server
  --permissions         the clients' user gets publish/subscribe allow and deny lists that
                        every message is checked against (on every server)
  --versus-unrestricted compare Starling with --permissions against Starling without
  --tls                 every server gets TLS on its client listener (--tls --tlscert
                        --tlskey with a self-signed certificate for localhost and
                        127.0.0.1 generated for the run) and every client connects with
                        TLS, trusting exactly that certificate; routes stay plaintext
  --versus-plaintext    compare Starling with --tls against Starling without TLS
  --ws                  every server gets a WebSocket listener (websocket { port no_tls })
                        and every client connects over WebSocket (ws:// URLs also work
                        with `run --url`)
";

fn main() -> ExitCode {
    let mut argv = std::env::args().skip(1);
    let cmd = argv.next().unwrap_or_default();
    let result = match cmd.as_str() {
        "run" => Args::parse(argv).and_then(run_cmd),
        "compare" => Args::parse(argv).and_then(compare_cmd),
        "config" => Args::parse(argv).and_then(config_cmd),
        "recover" => Args::parse(argv).and_then(recover_cmd),
        "inprocess" => Args::parse(argv).and_then(inprocess_cmd),
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => Err(BenchError::Usage(format!(
            "unknown command {cmd:?}; try `starling-bench help`"
        ))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("starling-bench: {e}");
            if e.is_sequence() {
                eprintln!("starling-bench: the run is INVALID: messages (or their acknowledgements) were lost, duplicated or reordered");
            }
            ExitCode::FAILURE
        }
    }
}

/// The flags `run` and `compare` share.
fn common(args: &mut Args) -> Result<Config> {
    let mut cfg = Config::default();
    if let Some(v) = args.size("size")? {
        cfg.size = v;
    }
    if let Some(v) = args.secs("duration")? {
        cfg.duration = v;
    }
    if let Some(v) = args.secs("drain-timeout")? {
        cfg.drain_timeout = v;
    }
    if let Some(v) = args.secs("connect-timeout")? {
        cfg.connect_timeout = v;
    }
    if let Some(v) = args.get("k")? {
        cfg.k = v;
    }
    if let Some(v) = args.get("concurrency")? {
        cfg.concurrency = v;
    }
    if let Some(v) = args.get("subs")? {
        cfg.subs = v;
    }
    if let Some(v) = args.get("subjects")? {
        cfg.subjects = v;
    }
    if let Some(v) = args.get("accounts")? {
        cfg.accounts = v;
    }
    if let Some(v) = args.get("subs-per-account")? {
        cfg.subs_per_account = v;
    }
    cfg.max_msgs = args.get("max-msgs")?;
    if let Some(v) = args.get("in-flight")? {
        cfg.in_flight = v;
    }
    if let Some(v) = args.str("storage") {
        cfg.storage = starling_benches::js::Storage::parse(&v)?;
    }
    if let Some(v) = args.get("msgs")? {
        cfg.msgs = v;
    }
    if let Some(v) = args.get("batch")? {
        cfg.batch = v;
    }
    if let Some(v) = args.get("replay-batch")? {
        cfg.replay_batch = v;
    }
    if let Some(v) = args.get("keys")? {
        cfg.keys = v;
    }
    Ok(cfg)
}

fn config_cmd(mut args: Args) -> Result<()> {
    let cfg = common(&mut args)?;
    let scenario = Scenario::parse(&args.str("scenario").unwrap_or("accounts".into()))?;
    args.finish()?;
    match scenario.server_config(&cfg) {
        Some(text) => {
            print!("{text}");
            Ok(())
        }
        None => Err(BenchError::Usage(format!(
            "{scenario} needs no config file"
        ))),
    }
}

fn run_cmd(mut args: Args) -> Result<()> {
    let mut cfg = common(&mut args)?;
    let scenarios = Scenario::parse_list(&args.str("scenario").unwrap_or("pubsub".into()))?;
    if let Some(v) = args.str("url") {
        cfg.url = v;
    }
    cfg.url2 = args.str("url2");
    cfg.pid = args.get("pid")?;
    cfg.pid2 = args.get("pid2")?;
    cfg.label = args.str("label");
    let ca = args.str("tlscacert");
    let json = args.str("json");
    args.finish()?;
    if let Some(path) = ca {
        starling_benches::tls::trust_pem_file(path.as_ref())?;
        cfg.url = with_tls(&cfg.url, true);
        cfg.url2 = cfg.url2.map(|u| with_tls(&u, true));
    }
    let mut results = Vec::new();
    for s in scenarios {
        cfg.scenario = s;
        eprintln!("starling-bench: running {s} against {}", cfg.url);
        results.push(run(&cfg)?);
    }
    print!("{}", run_table(&results));
    let lines: Vec<_> = results.iter().map(|r| r.to_json().to_string()).collect();
    write_json(json.as_deref(), &lines)
}

fn compare_cmd(mut args: Args) -> Result<()> {
    let base = common(&mut args)?;
    let scenarios = Scenario::parse_list(&args.str("scenarios").unwrap_or("pubsub".into()))?;
    let mut cfg = CompareConfig::new(base, scenarios);
    if let Some(v) = args.get("rounds")? {
        cfg.rounds = v;
    }
    if let Some(v) = args.str("starling-bin") {
        cfg.starling_bin = v.into();
    }
    if let Some(v) = args.str("nats-bin") {
        cfg.nats_bin = v.into();
    }
    cfg.account = args.str("account");
    cfg.versus_global = args.get("versus-global")?.unwrap_or(false);
    cfg.permissions = args.get("permissions")?.unwrap_or(false);
    cfg.versus_unrestricted = args.get("versus-unrestricted")?.unwrap_or(false);
    cfg.tls = args.get("tls")?.unwrap_or(false);
    cfg.versus_plaintext = args.get("versus-plaintext")?.unwrap_or(false);
    cfg.ws = args.get("ws")?.unwrap_or(false);
    let json = args.str("json");
    args.finish()?;
    let versus = [
        cfg.versus_global,
        cfg.versus_unrestricted,
        cfg.versus_plaintext,
    ];
    if versus.iter().filter(|&&v| v).count() > 1 {
        return Err(BenchError::Usage(
            "--versus-global, --versus-unrestricted and --versus-plaintext exclude each other"
                .into(),
        ));
    }
    let summary = compare::run(&cfg, |line| eprintln!("{line}"))?;
    print!("{}", compare::table(&summary));
    let lines: Vec<_> = compare::json_lines(&summary)
        .iter()
        .map(ToString::to_string)
        .collect();
    write_json(json.as_deref(), &lines)
}

fn inprocess_cmd(mut args: Args) -> Result<()> {
    use starling_benches::inprocess::{self, InprocessConfig};
    let d = InprocessConfig::default();
    let cfg = InprocessConfig {
        msgs: args.get("msgs")?.unwrap_or(d.msgs),
        size: args.size("size")?.unwrap_or(d.size),
        k: args.get("k")?.unwrap_or(d.k),
        requests: args.get("requests")?.unwrap_or(d.requests),
        rounds: args.get("rounds")?.unwrap_or(d.rounds),
        payloads: args.get("payloads")?.unwrap_or(d.payloads),
    };
    args.finish()?;
    let rows = inprocess::run(&cfg, |line| eprintln!("{line}"))?;
    print!("{}", inprocess::table(&rows));
    Ok(())
}

fn recover_cmd(mut args: Args) -> Result<()> {
    use starling_benches::recover::{self, RecoverConfig};
    let base = common(&mut args)?;
    let defaults = CompareConfig::new(base.clone(), Vec::new());
    let cfg = RecoverConfig {
        msgs: base.msgs,
        rounds: args.get("rounds")?.unwrap_or(3),
        bins: [
            args.str("starling-bin")
                .map_or(defaults.starling_bin, Into::into),
            args.str("nats-bin").map_or(defaults.nats_bin, Into::into),
        ],
        cold: args.get("cold")?.unwrap_or(false),
        base,
    };
    args.finish()?;
    let runs = recover::run(&cfg, |line| eprintln!("{line}"))?;
    print!("{}", recover::table(&runs));
    Ok(())
}

fn write_json(path: Option<&str>, lines: &[String]) -> Result<()> {
    let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
    match path {
        Some(p) => std::fs::write(p, text).map_err(|e| BenchError::io(format!("writing {p}"), e)),
        None => {
            println!();
            std::io::stdout()
                .write_all(text.as_bytes())
                .map_err(|e| BenchError::io("writing stdout", e))
        }
    }
}
