//! problem+json for the errors hyper answers itself, before any of our layers runs: a
//! request line it cannot parse (400), a request target too long (414), a header section
//! larger than its buffer or with too many fields (431). hyper writes those as a bare head
//! (`content-length: 0`) and closes the connection; it has no hook to give them a body.
//!
//! [`ProblemIo`] wraps the connection and replaces exactly such a head with the same status
//! as problem+json. It can tell hyper's heads from ours because every error our service
//! answers carries a problem body (`error::ensure_problem`), so a 4xx head with
//! `content-length: 0` can only be hyper's. It turns vectored writes off, so hyper hands
//! each response head over in one contiguous buffer.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::error::{Problem, PROBLEM_JSON};

/// A connection whose bare 4xx heads (hyper's own answers) become problem+json.
#[derive(Debug)]
pub struct ProblemIo<T> {
    inner: T,
    /// Replacement bytes still to write, and how many are written.
    pending: Vec<u8>,
    written: usize,
}

impl<T> ProblemIo<T> {
    /// Wraps a connection.
    pub fn new(inner: T) -> Self {
        Self {
            inner,
            pending: Vec::new(),
            written: 0,
        }
    }
}

/// If `buf` starts with a bare 4xx head, its length and the problem+json answer for it.
fn rewrite(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    if !buf.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    // Every 4xx of ours passes here (404, 401, 422, …): memchr's searches rather than a
    // byte-at-a-time scan and line splitting (≈ 3k instructions per error response in the
    // callgrind profile), and a head that declares a body is passed on at once.
    let end = memchr::memmem::find(buf, b"\r\n\r\n")? + 4;
    let head_bytes = &buf[..end];
    if let Some(at) = memchr::memmem::find(head_bytes, b"\r\ncontent-length: ") {
        let value = head_bytes.get(at + 18..)?;
        if value.first().is_some_and(|b| (b'1'..=b'9').contains(b)) {
            return None;
        }
    }
    let head = std::str::from_utf8(head_bytes).ok()?;
    let status: u16 = head.get(9..12)?.parse().ok()?;
    let bare = head
        .split("\r\n")
        .skip(1)
        .any(|l| l.eq_ignore_ascii_case("content-length: 0"));
    if !bare {
        return None;
    }
    let code = http::StatusCode::from_u16(status).ok()?;
    let detail = match status {
        414 => "the request target is too long",
        431 => "the request's header section is too large",
        _ => "the request could not be parsed as HTTP/1.1",
    };
    let body = serde_json::to_vec(&Problem {
        kind: "about:blank",
        title: code.canonical_reason().unwrap_or("Error").to_string(),
        status,
        detail: Some(detail.into()),
        errors: Vec::new(),
    })
    .ok()?;
    let date = head
        .split("\r\n")
        .find(|l| l.len() > 5 && l[..5].eq_ignore_ascii_case("date:"));
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\ncontent-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\nconnection: close\r\n",
        code.canonical_reason().unwrap_or("Error"),
        body.len()
    );
    if let Some(d) = date {
        out.push_str(d);
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(&body);
    Some((end, out))
}

impl<T: AsyncWrite + Unpin> ProblemIo<T> {
    /// Writes what a rewrite left pending.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.pending.len() {
            let n =
                ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.pending.clear();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for ProblemIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ProblemIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some((consumed, answer)) = rewrite(buf) {
            self.pending = answer;
            self.written = 0;
            // hyper's head counts as written; the answer goes out now or at the flush.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(consumed));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        // One contiguous buffer per write, so a head is never split across slices.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn only_bare_4xx_heads_are_rewritten() {
        let bare = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 21:00:00 GMT\r\n\r\n";
        let (n, out) = rewrite(bare).expect("rewritten");
        assert_eq!(n, bare.len());
        let out = String::from_utf8(out).expect("utf-8");
        assert!(
            out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{out}"
        );
        assert!(
            out.contains("content-type: application/problem+json\r\n"),
            "{out}"
        );
        assert!(
            out.contains("date: Tue, 01 Dec 2026 21:00:00 GMT\r\n"),
            "{out}"
        );
        let body = out.split_once("\r\n\r\n").expect("a body").1;
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["status"], 431);
        assert!(out.contains(&format!("content-length: {}\r\n", body.len())));
        // Ours always have a body; successes are never touched.
        assert!(rewrite(b"HTTP/1.1 404 Not Found\r\ncontent-length: 31\r\n\r\n{}").is_none());
        assert!(rewrite(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n").is_none());
        // The fast refusal reads the declared length, not its first digit alone.
        assert!(rewrite(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 10\r\n\r\n").is_none());
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n").is_some());
        assert!(
            rewrite(b"HTTP/1.1 400 Bad Request\r\ndate: x\r\ncontent-length: 0\r\n\r\n").is_some()
        );
    }
}
