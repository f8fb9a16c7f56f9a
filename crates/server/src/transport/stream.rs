//! The byte stream one connection runs on, once its handshake is done.

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The read half a protocol handler reads from.
pub(crate) type Reader = Box<dyn AsyncRead + Send + Unpin>;
/// The write half a connection's writer task owns.
pub(crate) type Writer = Box<dyn AsyncWrite + Send + Unpin>;

/// A connection's transport: plain TCP, or TLS over TCP (either side of the handshake).
pub(crate) enum Stream {
    /// Plain TCP.
    Tcp(TcpStream),
    /// TLS, accepted or dialled.
    #[cfg(feature = "tls")]
    Tls(Box<tokio_rustls::TlsStream<TcpStream>>),
}

impl Stream {
    /// The halves the reader and the writer task own. TCP splits without a lock; TLS is one
    /// state machine, so its halves share it behind tokio's split lock (taken once per read or
    /// vectored write, not per message). The boxes cost one indirect call per syscall.
    pub(crate) fn split(self) -> (Reader, Writer) {
        match self {
            Self::Tcp(s) => {
                let (r, w) = s.into_split();
                (Box::new(r), Box::new(w))
            }
            #[cfg(feature = "tls")]
            Self::Tls(s) => {
                let (r, w) = tokio::io::split(*s);
                (Box::new(r), Box::new(w))
            }
        }
    }
}
