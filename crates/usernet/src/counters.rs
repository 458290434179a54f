//! The engine's counters: what happened, for `SIGUSR1`, the stats file and the exit
//! report. Handlers add to them through their context (`ctx.rs`); the transmit side
//! keeps its own ([`TxCounters`]) and [`crate::Engine::counters`] puts them together.

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxCounters {
    pub frames: u64,
    pub bytes: u64,
    pub dropped_full: u64,
    /// Datagrams too big for the guest's MTU, sent as fragments.
    pub fragmented: u64,
}

/// What a vhost-user device did (zero for other attachments).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// Frames taken from the transmit queue and put on the receive queue.
    pub frames_from_guest: u64,
    pub frames_to_guest: u64,
    /// The largest frame each way (TCP segmentation offload shows here).
    pub largest_from_guest: u64,
    pub largest_to_guest: u64,
    /// Receive buffers a frame used beyond its first (mergeable buffers).
    pub rx_merged_buffers: u64,
    /// Frames to the guest whose payload the kernel wrote straight into the guest's
    /// buffers (a socket's data, one copy).
    pub rx_in_place: u64,
    /// Chains that could not be read or written: the queue was stopped.
    pub queue_errors: u64,
    /// Transmit chains too short or too long for a frame (dropped, given back).
    pub bad_frames: u64,
    /// Eventfd signals to the guest.
    pub notifies: u64,
    /// Times the device was started by the guest's driver (boots, resets).
    pub starts: u64,
    /// Frames per queue (even: to the guest, odd: from it).
    pub queue_frames: [u64; 8],
}

/// What happened, for `SIGUSR1` and the exit report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    pub rx_frames: u64,
    pub rx_bytes: u64,
    pub rx_malformed: u64,
    pub rx_unsupported: u64,
    /// Guest frames for a service or protocol turned off (`--no-dhcp`, `--no-tcp`, …).
    pub rx_disabled: u64,
    pub rx_fragments: u64,
    /// Guest datagrams put back together from fragments, and given up unfinished.
    pub rx_reassembled: u64,
    pub rx_fragments_dropped: u64,
    pub tx: TxCounters,
    pub tcp_opened: u64,
    pub tcp_accepted: u64,
    pub udp_opened: u64,
    pub ping_opened: u64,
    pub ping_denied: u64,
    pub refused_full: u64,
    pub rst_sent: u64,
    pub unreachable_sent: u64,
    /// ICMP errors from the network relayed to the guest (time exceeded, unreachable…).
    pub icmp_relayed: u64,
    pub retransmits: u64,
    /// Guest TCP segments the socket took only in part (the window was too optimistic).
    pub tcp_send_refused: u64,
    /// Guest TCP segments held for the socket: after a hole, or refused in part.
    pub tcp_segments_held: u64,
    /// Guest TCP segments (vhost-user) relayed with their data left in the guest's
    /// memory: what the socket took of it, it took from there.
    pub tcp_segments_in_place: u64,
    /// Guest TCP segments whose data went to their socket in a run with the ones that
    /// followed them (`tcp/gather.rs`): one `send()` for all.
    pub tcp_segments_gathered: u64,
    pub tcp_bytes_from_guest: u64,
    pub tcp_bytes_to_guest: u64,
    pub udp_bytes_from_guest: u64,
    pub udp_bytes_to_guest: u64,
    pub arp_replies: u64,
    pub ndp_replies: u64,
    pub dhcp_replies: u64,
    pub flows_now: u64,
    pub flows_cap: u64,
    /// Waits of the event loop that ended with events found while busy polling (no
    /// wake-up needed), and waits that slept (`busy_poll.rs`).
    pub waits_polled: u64,
    pub waits_slept: u64,
    /// How long the loop polls before it sleeps now, in microseconds (0: it sleeps).
    pub busy_poll_window_us: u64,
    /// TCP connections handed to a migration's target, taken over from a source, and
    /// not carried (`migrate/`).
    pub tcp_migrated_out: u64,
    pub tcp_migrated_in: u64,
    pub tcp_migrate_failed: u64,
    /// Migrations whose read-out was taken back: the guest ran on the source again.
    pub migrations_taken_back: u64,
    /// UDP flows handed to a migration's target, and taken over from a source.
    pub udp_migrated_out: u64,
    pub udp_migrated_in: u64,
    /// Bytes of the carried connections' socket queues, read out (source) and written
    /// back or owed by the relay (target).
    pub tcp_migrated_queue_out: u64,
    pub tcp_migrated_queue_in: u64,
    /// Bytes of send queues the rebuilt sockets could not take, sent after repair mode.
    pub tcp_migrated_owed: u64,
    pub device: DeviceCounters,
}

impl Counters {
    /// One `name value` line per counter, for `--stats FILE` and scripts.
    pub fn lines(&self) -> String {
        let d = &self.device;
        let fields: [(&str, u64); 57] = [
            ("flows_now", self.flows_now),
            ("flows_cap", self.flows_cap),
            ("tcp_opened", self.tcp_opened),
            ("tcp_accepted", self.tcp_accepted),
            ("udp_opened", self.udp_opened),
            ("ping_opened", self.ping_opened),
            ("ping_denied", self.ping_denied),
            ("refused_full", self.refused_full),
            ("rst_sent", self.rst_sent),
            ("unreachable_sent", self.unreachable_sent),
            ("icmp_relayed", self.icmp_relayed),
            ("retransmits", self.retransmits),
            ("tcp_send_refused", self.tcp_send_refused),
            ("tcp_segments_held", self.tcp_segments_held),
            ("tcp_segments_in_place", self.tcp_segments_in_place),
            ("tcp_segments_gathered", self.tcp_segments_gathered),
            ("tcp_bytes_from_guest", self.tcp_bytes_from_guest),
            ("tcp_bytes_to_guest", self.tcp_bytes_to_guest),
            ("udp_bytes_from_guest", self.udp_bytes_from_guest),
            ("udp_bytes_to_guest", self.udp_bytes_to_guest),
            ("rx_frames", self.rx_frames),
            ("rx_bytes", self.rx_bytes),
            ("rx_malformed", self.rx_malformed),
            ("rx_unsupported", self.rx_unsupported),
            ("rx_disabled", self.rx_disabled),
            ("rx_fragments", self.rx_fragments),
            ("rx_reassembled", self.rx_reassembled),
            ("rx_fragments_dropped", self.rx_fragments_dropped),
            ("arp_replies", self.arp_replies),
            ("ndp_replies", self.ndp_replies),
            ("dhcp_replies", self.dhcp_replies),
            ("tx_frames", self.tx.frames),
            ("tx_bytes", self.tx.bytes),
            ("tx_dropped_full", self.tx.dropped_full),
            ("tx_fragmented", self.tx.fragmented),
            ("waits_polled", self.waits_polled),
            ("waits_slept", self.waits_slept),
            ("busy_poll_window_us", self.busy_poll_window_us),
            ("tcp_migrated_out", self.tcp_migrated_out),
            ("tcp_migrated_in", self.tcp_migrated_in),
            ("tcp_migrate_failed", self.tcp_migrate_failed),
            ("tcp_migrated_queue_out", self.tcp_migrated_queue_out),
            ("tcp_migrated_queue_in", self.tcp_migrated_queue_in),
            ("tcp_migrated_owed", self.tcp_migrated_owed),
            ("migrations_taken_back", self.migrations_taken_back),
            ("udp_migrated_out", self.udp_migrated_out),
            ("udp_migrated_in", self.udp_migrated_in),
            ("vu_frames_from_guest", d.frames_from_guest),
            ("vu_frames_to_guest", d.frames_to_guest),
            ("vu_largest_from_guest", d.largest_from_guest),
            ("vu_largest_to_guest", d.largest_to_guest),
            ("vu_rx_merged_buffers", d.rx_merged_buffers),
            ("vu_rx_in_place", d.rx_in_place),
            ("vu_queue_errors", d.queue_errors),
            ("vu_bad_frames", d.bad_frames),
            ("vu_notifies", d.notifies),
            ("vu_starts", d.starts),
        ];
        let queues = d.queue_frames.iter().enumerate().map(|(q, n)| {
            let way = if q % 2 == 0 { "rx" } else { "tx" };
            format!("vu_{way}{}_frames {n}\n", q / 2)
        });
        fields
            .iter()
            .map(|(k, v)| format!("{k} {v}\n"))
            .chain(queues)
            .collect()
    }
}

impl std::fmt::Display for Counters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "flows {}/{} (tcp opened {} accepted {}, udp {}, ping {}), refused (table full) {}; \
             guest rx {} frames {} bytes (malformed {}, unsupported {}, turned off {}, fragments {} → {} datagrams, {} given up); \
             guest tx {} frames {} bytes (dropped, guest side full {}; fragmented {}); \
             tcp bytes from/to guest {}/{}, retransmits {}, refused by socket {}, held {}, rst {}; udp bytes from/to guest {}/{}; \
             icmp unreachable {}, relayed {}, ping denied {}; arp {}, ndp {}, dhcp {}; \
             waits polled {} slept {}",
            self.flows_now,
            self.flows_cap,
            self.tcp_opened,
            self.tcp_accepted,
            self.udp_opened,
            self.ping_opened,
            self.refused_full,
            self.rx_frames,
            self.rx_bytes,
            self.rx_malformed,
            self.rx_unsupported,
            self.rx_disabled,
            self.rx_fragments,
            self.rx_reassembled,
            self.rx_fragments_dropped,
            self.tx.frames,
            self.tx.bytes,
            self.tx.dropped_full,
            self.tx.fragmented,
            self.tcp_bytes_from_guest,
            self.tcp_bytes_to_guest,
            self.retransmits,
            self.tcp_send_refused,
            self.tcp_segments_held,
            self.rst_sent,
            self.udp_bytes_from_guest,
            self.udp_bytes_to_guest,
            self.unreachable_sent,
            self.icmp_relayed,
            self.ping_denied,
            self.arp_replies,
            self.ndp_replies,
            self.dhcp_replies,
            self.waits_polled,
            self.waits_slept,
        )
    }
}
