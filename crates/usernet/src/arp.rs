//! ARP: the engine answers every request for an IPv4 address that is not the guest's
//! own with its MAC ([`ENGINE_MAC`]), like a proxy-ARP router. The guest therefore sends
//! everything, gateway-bound or "on-link", to the engine.
//!
//! What holds: probes (sender 0.0.0.0), gratuitous ARP and requests for the guest's own
//! address get no answer, so the guest's duplicate address detection passes.

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};

use crate::config::ENGINE_MAC;
use crate::engine::Engine;
use crate::frame::{ETHERTYPE_ARP, GuestTx};

impl<G: GuestTx> Engine<G> {
    pub(crate) fn arp_from_guest(&mut self, bytes: &[u8]) {
        let Ok(packet) = ArpPacket::new_checked(bytes) else {
            self.counters.rx_malformed += 1;
            return;
        };
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr,
            source_protocol_addr,
            target_protocol_addr,
            ..
        }) = ArpRepr::parse(&packet)
        else {
            self.counters.rx_unsupported += 1;
            return;
        };
        if operation != ArpOperation::Request
            || source_protocol_addr.is_unspecified()
            || target_protocol_addr == source_protocol_addr
            || self.cfg.is_guest_addr(target_protocol_addr.into())
        {
            return;
        }
        let reply = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: EthernetAddress(ENGINE_MAC),
            source_protocol_addr: target_protocol_addr,
            target_hardware_addr: source_hardware_addr,
            target_protocol_addr: source_protocol_addr,
        };
        let sent = self.out.emit(14 + reply.buffer_len(), |buf, _| {
            buf[0..6].copy_from_slice(&source_hardware_addr.0);
            buf[6..12].copy_from_slice(&ENGINE_MAC);
            buf[12..14].copy_from_slice(&ETHERTYPE_ARP.to_be_bytes());
            let mut arp = ArpPacket::new_unchecked(&mut buf[14..14 + reply.buffer_len()]);
            reply.emit(&mut arp);
            14 + reply.buffer_len()
        });
        if sent {
            self.counters.arp_replies += 1;
        }
    }
}
