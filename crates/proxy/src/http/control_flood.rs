//! HTTP/2 control-frame floods (the PING and SETTINGS floods of CVE-2019-9512 and
//! CVE-2019-9515): every PING or SETTINGS a caller sends makes the proxy write an
//! acknowledgement, so a caller that sends them by the thousand keeps the proxy busy
//! answering frames that carry no request. A connection that sends more than a client
//! ever needs is cut off, as Envoy's flood protection cuts it off.
//!
//! The frames are counted by walking the 9-byte frame headers of what arrives; payloads
//! are skipped, never copied. An HTTP/1.1 connection is recognized by its first bytes
//! and not walked at all.

use std::time::Instant;

const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// How many acknowledged frames a connection may send at once (Envoy's
/// `max_outbound_control_frames` default).
const BURST: f64 = 1000.0;
/// How many per second it may go on sending: a client pings every few seconds, and
/// even a gRPC client measuring its bandwidth sends a few a second.
const PER_SECOND: f64 = 100.0;

#[derive(Debug)]
enum Position {
    /// Matching the client preface; this many bytes matched so far.
    Preface(usize),
    /// Reading a frame header; this many of its bytes read so far.
    Header(usize, [u8; FRAME_HEADER]),
    /// Skipping a frame's payload; this many bytes left.
    Payload(usize),
    /// Not HTTP/2 (or already cut off): nothing to count.
    Off,
}

/// What a connection has sent, and how many acknowledged frames it may still send.
#[derive(Debug)]
pub struct ControlFrameBudget {
    position: Position,
    tokens: f64,
    refilled: Option<Instant>,
}

impl Default for ControlFrameBudget {
    fn default() -> Self {
        Self {
            position: Position::Preface(0),
            tokens: BURST,
            refilled: None,
        }
    }
}

impl ControlFrameBudget {
    /// Takes in bytes the connection read; `false` once it has flooded.
    pub fn admit(&mut self, bytes: &[u8]) -> bool {
        if matches!(self.position, Position::Off) {
            return true;
        }
        let frames = self.count(bytes);
        if frames == 0 {
            return true;
        }
        let now = Instant::now();
        if let Some(last) = self.refilled {
            let earned = now.duration_since(last).as_secs_f64() * PER_SECOND;
            self.tokens = (self.tokens + earned).min(BURST);
        }
        self.refilled = Some(now);
        self.tokens -= f64::from(frames);
        if self.tokens < 0.0 {
            self.position = Position::Off;
            return false;
        }
        true
    }

    /// Walks `bytes`; how many PING and SETTINGS frames (not acknowledgements) began.
    fn count(&mut self, mut bytes: &[u8]) -> u32 {
        let mut frames = 0;
        while !bytes.is_empty() {
            match &mut self.position {
                Position::Off => break,
                Position::Preface(matched) => {
                    let n = (PREFACE.len() - *matched).min(bytes.len());
                    if bytes[..n] != PREFACE[*matched..*matched + n] {
                        self.position = Position::Off;
                        break;
                    }
                    *matched += n;
                    bytes = &bytes[n..];
                    if *matched == PREFACE.len() {
                        self.position = Position::Header(0, [0; FRAME_HEADER]);
                    }
                }
                Position::Header(have, header) => {
                    let n = (FRAME_HEADER - *have).min(bytes.len());
                    header[*have..*have + n].copy_from_slice(&bytes[..n]);
                    *have += n;
                    bytes = &bytes[n..];
                    if *have == FRAME_HEADER {
                        let length = u32::from_be_bytes([0, header[0], header[1], header[2]]);
                        let (kind, flags) = (header[3], header[4]);
                        if matches!(kind, PING | SETTINGS) && flags & ACK == 0 {
                            frames += 1;
                        }
                        self.position = match length {
                            0 => Position::Header(0, [0; FRAME_HEADER]),
                            length => Position::Payload(length as usize),
                        };
                    }
                }
                Position::Payload(left) => {
                    let n = (*left).min(bytes.len());
                    *left -= n;
                    bytes = &bytes[n..];
                    if *left == 0 {
                        self.position = Position::Header(0, [0; FRAME_HEADER]);
                    }
                }
            }
        }
        frames
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend([kind, flags, 0, 0, 0, 0]);
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn counts_pings_and_settings_across_reads_but_not_acks_or_payloads() {
        let mut budget = ControlFrameBudget::default();
        let mut bytes = PREFACE.to_vec();
        bytes.extend(frame(SETTINGS, 0, &[0; 6]));
        bytes.extend(frame(SETTINGS, ACK, &[]));
        // A DATA frame whose payload looks like a PING header.
        bytes.extend(frame(0x0, 0, &frame(PING, 0, &[0; 8])));
        bytes.extend(frame(PING, 0, &[0; 8]));
        bytes.extend(frame(PING, ACK, &[0; 8]));
        let mut total = 0;
        for piece in bytes.chunks(5) {
            total += budget.count(piece);
        }
        assert_eq!(total, 2);
    }

    #[test]
    fn a_flood_is_cut_off_and_a_client_pinging_now_and_then_is_not() {
        let mut budget = ControlFrameBudget::default();
        assert!(budget.admit(PREFACE));
        let ping = frame(PING, 0, &[0; 8]);
        for _ in 0..900 {
            assert!(budget.admit(&ping));
        }
        let flood: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 200)
            .collect();
        assert!(!budget.admit(&flood));
    }

    #[test]
    fn http1_is_not_walked() {
        let mut budget = ControlFrameBudget::default();
        let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n".repeat(2000);
        assert!(budget.admit(&request));
        assert!(matches!(budget.position, Position::Off));
    }
}
