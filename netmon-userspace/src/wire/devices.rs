//! The device table (`netmon devices`, `netmon usage --by device`,
//! `GET /api/v1/devices`): per LAN device, what it sent and received
//! through this host over a window, by class.
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::FrameCount;

impl FrameCount {
    /// Adds `packets` and `frame_bytes`.
    pub fn add(&mut self, packets: u64, frame_bytes: u64) {
        self.packets = self.packets.saturating_add(packets);
        self.frame_bytes = self.frame_bytes.saturating_add(frame_bytes);
    }
}

/// One direction of a device, by class (`total` is their sum).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceDirection {
    /// Everything.
    pub total: FrameCount,
    /// Exchanged with this host itself.
    pub host: FrameCount,
    /// Forwarded (routed or bridged) to/from another LAN interface.
    pub forwarded_local: FrameCount,
    /// Forwarded to/from a non-LAN interface (the internet side).
    pub forwarded_internet: FrameCount,
    /// Not IP (ARP and other link-layer protocols).
    pub not_ip: FrameCount,
}

/// One device over the window.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRow {
    /// The device: its name when `[devices] merge` groups several MACs,
    /// else its MAC; `overflow` for traffic of devices the full map could
    /// not hold.
    pub device: String,
    /// Its name (config or lease), if known.
    pub name: Option<String>,
    /// `config` or `lease`.
    pub name_source: Option<crate::devices::NameSource>,
    /// Its MAC addresses.
    pub macs: Vec<String>,
    /// A (unicast) MAC has the locally administered bit (randomised
    /// address).
    pub randomised: bool,
    /// Broadcast or multicast address: not one device.
    pub group: bool,
    /// Its addresses now (leases and the neighbour table).
    pub addresses: Vec<IpAddr>,
    /// The LAN interfaces it was seen on.
    pub interfaces: Vec<String>,
    /// What the device sent (received by this host on the LAN interface).
    pub tx: DeviceDirection,
    /// What the device received (sent by this host on the LAN interface).
    pub rx: DeviceDirection,
}

/// The answer to `Request::Devices`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Devices {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// The rows read cover exactly the window.
    pub exact: bool,
    /// Devices, largest total first.
    pub devices: Vec<DeviceRow>,
}

/// One step of [`DeviceHistory`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DevicePoint {
    /// Step start, unix ms.
    pub start_unix_ms: u64,
    /// What the device sent in the step.
    pub tx: DeviceDirection,
    /// What the device received in the step.
    pub rx: DeviceDirection,
}

/// The answer to `Request::DeviceHistory`: one device's traffic per step.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceHistory {
    /// [`super::SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The device asked for (name, MAC or address).
    pub device: String,
    /// Window start, unix ms.
    pub from_unix_ms: u64,
    /// Window end, unix ms.
    pub until_unix_ms: u64,
    /// Step, ms.
    pub step_ms: u64,
    /// The rows read cover exactly the window.
    pub exact: bool,
    /// Steps with traffic, oldest first.
    pub points: Vec<DevicePoint>,
}
