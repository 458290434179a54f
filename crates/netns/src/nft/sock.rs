//! A NETLINK_NETFILTER socket: dumps of tables, chains and rules, and batch transactions.
//!
//! How it works: the socket is opened on the calling thread, so it belongs to that
//! thread's network namespace (the pod's, on the namespace thread). Netlink requests to
//! the kernel are handled synchronously inside `send`: when `send` returns, every answer
//! of that request is already queued on the socket. A transaction is sent as one buffer
//! (see [`super::wire::Batch`]) and followed by a `NFT_MSG_GETGEN` request with
//! `NLM_F_ACK`: answers are read until that request's acknowledgement, which therefore
//! comes after every answer to the batch — no counting, no timeout. The first non-zero
//! answer (lowest sequence number) is the cause; later ones are usually its consequences.
//! A dump is read until `NLMSG_DONE`.

use std::io;

use netlink_packet_core::{
    NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_netfilter::nftables::{GenMessage, NfTablesMessage};
use netlink_packet_netfilter::{
    NetfilterHeader, NetfilterMessage, NetfilterMessageInner, NetfilterProtoFamily,
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_NETFILTER};

use super::wire::{Batch, message};

/// Receive buffer: the kernel caps one netlink datagram at 32 KiB.
const RECV_BUF: usize = 64 * 1024;

/// What went wrong talking to nf_tables.
#[derive(Debug)]
pub(crate) enum SockError {
    Io(io::Error),
    /// The kernel refused the batch message with this sequence number.
    Nack {
        seq: u32,
        error: io::Error,
    },
    Decode(String),
}

pub(crate) struct NfSocket {
    sock: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl NfSocket {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn open() -> Result<NfSocket, SockError> {
        let mut sock = Socket::new(NETLINK_NETFILTER).map_err(SockError::Io)?;
        sock.bind_auto().map_err(SockError::Io)?;
        sock.connect(&SocketAddr::new(0, 0))
            .map_err(SockError::Io)?;
        // Acknowledgements without a copy of the request.
        let _ = sock.set_cap_ack(true);
        Ok(NfSocket {
            sock,
            seq: 1,
            buf: Vec::with_capacity(RECV_BUF),
        })
    }

    fn next_seq(&mut self) -> u32 {
        let s = self.seq;
        self.seq += 1;
        s
    }

    fn send(&self, buf: &[u8]) -> Result<(), SockError> {
        let n = self.sock.send(buf, 0).map_err(SockError::Io)?;
        if n != buf.len() {
            return Err(SockError::Io(io::Error::other(format!(
                "netlink send wrote {n} of {} bytes",
                buf.len()
            ))));
        }
        Ok(())
    }

    /// Reads one datagram and decodes the messages in it.
    fn recv(&mut self) -> Result<Vec<NetlinkMessage<NetfilterMessage>>, SockError> {
        self.buf.clear();
        let n = self
            .sock
            .recv(&mut self.buf, libc_msg_trunc())
            .map_err(SockError::Io)?;
        if n > self.buf.len() {
            return Err(SockError::Decode(format!(
                "netlink answer of {n} bytes does not fit the {RECV_BUF}-byte buffer"
            )));
        }
        let mut out = Vec::new();
        let mut at = 0;
        while at + 16 <= n {
            let len =
                u32::from_ne_bytes(self.buf[at..at + 4].try_into().unwrap_or([0; 4])) as usize;
            if len < 16 || at + len > n {
                return Err(SockError::Decode(format!(
                    "netlink message of length {len} at offset {at} of {n}"
                )));
            }
            let m = NetlinkMessage::<NetfilterMessage>::deserialize(&self.buf[at..at + len])
                .map_err(|e| SockError::Decode(e.to_string()))?;
            out.push(m);
            at += (len + 3) & !3;
        }
        Ok(out)
    }

    /// Every object a dump request for `msg` (a GET message) returns, in every family. A
    /// dump that the kernel marks interrupted (the ruleset changed while it was being
    /// read, `NLM_F_DUMP_INTR`) is read again.
    pub(crate) fn dump(
        &mut self,
        msg: NfTablesMessage,
    ) -> Result<Vec<NetfilterMessage>, SockError> {
        let mut tries = 0;
        loop {
            let (out, interrupted) = self.dump_once(msg.clone())?;
            tries += 1;
            if !interrupted || tries == 5 {
                return Ok(out);
            }
        }
    }

    fn dump_once(
        &mut self,
        msg: NfTablesMessage,
    ) -> Result<(Vec<NetfilterMessage>, bool), SockError> {
        let seq = self.next_seq();
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0);
        let mut req = message(
            NetfilterMessage::new(header, msg),
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
        );
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.send(&buf)?;
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for m in self.recv()? {
                if m.header.sequence_number != seq {
                    continue;
                }
                interrupted |= m.header.flags & NLM_F_DUMP_INTR != 0;
                match m.payload {
                    NetlinkPayload::Done(_) => return Ok((out, interrupted)),
                    NetlinkPayload::Error(e) if e.code.is_some() => {
                        return Err(SockError::Io(e.to_io()));
                    }
                    NetlinkPayload::InnerMessage(inner) => out.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// Sends `batch` and waits for the kernel's verdict on all of it.
    pub(crate) fn transact(&mut self, batch: &mut Batch) -> Result<(), SockError> {
        let bytes = batch.finish();
        self.seq = self.seq.max(batch.next_seq());
        self.send(&bytes)?;
        let sync = self.next_seq();
        let header = NetfilterHeader::new(NetfilterProtoFamily::Unspec, 0, 0);
        let mut req = message(
            NetfilterMessage::new(
                header,
                NetfilterMessageInner::NfTables(NfTablesMessage::GetGen(GenMessage {
                    attributes: vec![],
                })),
            ),
            NLM_F_REQUEST | NLM_F_ACK,
            sync,
        );
        req.finalize();
        let mut buf = vec![0u8; req.buffer_len()];
        req.serialize(&mut buf);
        self.send(&buf)?;
        let mut first: Option<(u32, io::Error)> = None;
        loop {
            for m in self.recv()? {
                let seq = m.header.sequence_number;
                let NetlinkPayload::Error(e) = m.payload else {
                    continue;
                };
                if seq == sync {
                    return match first {
                        Some((seq, error)) => Err(SockError::Nack { seq, error }),
                        None => Ok(()),
                    };
                }
                if e.code.is_some() && first.as_ref().is_none_or(|(s, _)| seq < *s) {
                    first = Some((seq, e.to_io()));
                }
            }
        }
    }
}

/// `MSG_TRUNC`: `recv` returns the datagram's real length even when it is cut.
fn libc_msg_trunc() -> i32 {
    nix::sys::socket::MsgFlags::MSG_TRUNC.bits()
}
