//! A fault-injecting proxy between the load tool and a real broker: it passes everything
//! through except one `MSG`, which it drops, duplicates or delays past the next, so the tests
//! can show that the tool's checks fail a run.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread;

use starling_proto::{Limits, ServerOp, ServerParser};

/// The prefix that counts every `MSG`.
pub(crate) const ANY: &str = "";

/// What the proxy does to one `MSG`, counted per connection among those whose subject has
/// the prefix ([`ANY`]: every one).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Fault {
    /// Drop the n-th MSG (1-based) on a subject with the prefix.
    Drop(&'static str, u64),
    /// Send it twice.
    Duplicate(&'static str, u64),
    /// Send it after the next one with the prefix.
    Swap(&'static str, u64),
}

impl Fault {
    fn prefix(self) -> &'static str {
        match self {
            Self::Drop(p, _) | Self::Duplicate(p, _) | Self::Swap(p, _) => p,
        }
    }
}

/// A proxy in front of `upstream` that injects `fault` into what the server sends to each
/// connection; returns its URL.
pub(crate) fn proxy(upstream: String, fault: Fault) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("nats://{}", listener.local_addr().unwrap());
    let addr = upstream.trim_start_matches("nats://").to_string();
    thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(client) = client else { return };
            let server = TcpStream::connect(&addr).unwrap();
            let (mut c_in, mut s_out) = (client.try_clone().unwrap(), server.try_clone().unwrap());
            thread::spawn(move || {
                let _ = std::io::copy(&mut c_in, &mut s_out);
                let _ = s_out.shutdown(Shutdown::Write);
            });
            thread::spawn(move || forward(server, client, fault));
        }
    });
    url
}

fn forward(mut from: TcpStream, mut to: TcpStream, fault: Fault) {
    let mut parser = ServerParser::new(Limits {
        max_control_line: 1 << 16,
        max_payload: 1 << 26,
    });
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    let mut msgs = 0u64;
    let mut held: Option<Vec<u8>> = None;
    loop {
        let n = match from.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        let mut start = 0;
        while let Ok(Some((op, used))) = parser.parse(&buf[start..]) {
            let frame = &buf[start..start + used];
            let hit =
                matches!(op, ServerOp::Msg(m) if m.subject.starts_with(fault.prefix().as_bytes()));
            start += used;
            if !hit {
                out.extend_from_slice(frame);
                continue;
            }
            msgs += 1;
            match fault {
                Fault::Drop(_, at) if msgs == at => {}
                Fault::Duplicate(_, at) if msgs == at => {
                    out.extend_from_slice(frame);
                    out.extend_from_slice(frame);
                }
                Fault::Swap(_, at) if msgs == at => held = Some(frame.to_vec()),
                Fault::Swap(_, at) if msgs == at + 1 => {
                    out.extend_from_slice(frame);
                    out.extend_from_slice(&held.take().unwrap());
                }
                _ => out.extend_from_slice(frame),
            }
        }
        buf.drain(..start);
        if to.write_all(&out).is_err() {
            break;
        }
    }
    let _ = to.shutdown(Shutdown::Both);
}
