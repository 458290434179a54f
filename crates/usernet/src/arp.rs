//! ARP: the engine answers every request for an IPv4 address that is not the guest's
//! own with its MAC (`EngineConfig::engine_mac`), like a proxy-ARP router. The guest therefore sends
//! everything, gateway-bound or "on-link", to the engine.
//!
//! What holds: probes (sender 0.0.0.0), gratuitous ARP and requests for the guest's own
//! address get no answer, so the guest's duplicate address detection passes.

use smoltcp::wire::{ArpOperation, ArpPacket, ArpRepr, EthernetAddress};

use crate::ctx::Ctx;
use crate::frame::GuestTx;
use crate::wire::{ETH_HLEN, ETHERTYPE_ARP, write_eth};

/// An ARP packet from the guest (after the Ethernet header).
pub fn from_guest<G: GuestTx>(cx: &mut Ctx<G>, bytes: &[u8]) {
    let Ok(packet) = ArpPacket::new_checked(bytes) else {
        cx.counters.rx_malformed += 1;
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
        cx.counters.rx_unsupported += 1;
        return;
    };
    if operation != ArpOperation::Request
        || source_protocol_addr.is_unspecified()
        || target_protocol_addr == source_protocol_addr
        || cx.cfg.is_guest_addr(target_protocol_addr.into())
    {
        return;
    }
    let engine_mac = cx.out.engine_mac;
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: EthernetAddress(engine_mac),
        source_protocol_addr: target_protocol_addr,
        target_hardware_addr: source_hardware_addr,
        target_protocol_addr: source_protocol_addr,
    };
    let len = ETH_HLEN + reply.buffer_len();
    let sent = cx.out.emit(len, |buf, _| {
        let l3 = write_eth(buf, source_hardware_addr.0, engine_mac, ETHERTYPE_ARP);
        reply.emit(&mut ArpPacket::new_unchecked(&mut buf[l3..len]));
        len
    });
    if sent {
        cx.counters.arp_replies += 1;
    }
}
