//! A consumed message copied into an [`Inbound`]. Headers are read straight from librdkafka:
//! rdkafka's own accessors (`Headers::get`, `try_get`, `iter`) panic on a key that is not UTF-8,
//! which would stop the service on that message at every restart. Such a header is left out and
//! named in [`Inbound::bad_header`], so that the message is dead-lettered with its reason.
//!
//! The copying itself is [`from_parts`], a pure function over the message's bytes (what the
//! fuzz target `message` drives); [`inbound`] only reads those bytes out of librdkafka.

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;

use super::message::Whole;
use super::record::{Inbound, Source};

/// One header as librdkafka hands it over: key bytes and value (`None`: a null value), or
/// `None` when librdkafka cannot read it.
pub type RawHeader<'a> = Option<(&'a [u8], Option<&'a [u8]>)>;

/// Copies a consumed message (of a payload over `keep` bytes, only the first `keep`); never
/// panics, whatever its headers hold.
pub fn inbound(m: &BorrowedMessage<'_>, keep: usize) -> Inbound {
    let source = Source {
        topic: m.topic().to_string(),
        partition: m.partition(),
        offset: m.offset(),
        timestamp: m.timestamp().to_millis(),
    };
    from_parts(source, m.key(), m.payload(), raw_headers(m), keep)
}

/// Copies a message from its parts: headers with a UTF-8 key are kept in order (a null value
/// stays `None`); the first one that cannot be represented is named in `bad_header`. A payload
/// over `keep` bytes is not copied whole (it is over the payload limit, so it can only be
/// dead-lettered): its first `keep` bytes are, with its length and SHA-256. Never panics.
pub fn from_parts<'a>(
    source: Source,
    key: Option<&[u8]>,
    payload: Option<&[u8]>,
    raw: impl IntoIterator<Item = RawHeader<'a>>,
    keep: usize,
) -> Inbound {
    let raw = raw.into_iter();
    let mut headers = Vec::with_capacity(raw.size_hint().0);
    let mut bad = None;
    for (idx, header) in raw.enumerate() {
        let Some((key, value)) = header else {
            bad.get_or_insert_with(|| format!("header {idx} cannot be read"));
            continue;
        };
        match std::str::from_utf8(key) {
            Ok(key) => headers.push((key.to_string(), value.map(<[u8]>::to_vec))),
            Err(_) => {
                bad.get_or_insert_with(|| {
                    format!("header {idx}'s key is not UTF-8 (bytes {})", hex(key))
                });
            }
        }
    }
    let whole = payload.filter(|p| p.len() > keep).map(Whole::of);
    Inbound {
        source,
        key: key.map(<[u8]>::to_vec),
        payload: payload.map(|p| p[..p.len().min(keep)].to_vec()),
        headers,
        bad_header: bad,
        whole,
    }
}

/// The message's headers as librdkafka holds them, borrowed from the message.
fn raw_headers<'m>(m: &'m BorrowedMessage<'_>) -> impl Iterator<Item = RawHeader<'m>> + 'm {
    let mut list: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the live message `m` borrows; librdkafka sets `list` to the
    // message's own header list (valid as long as the message), or returns an error without one.
    let err = unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut list) };
    let count = if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || list.is_null() {
        0
    } else {
        // SAFETY: `list` is the valid header list obtained above.
        unsafe { rdsys::rd_kafka_header_cnt(list) }
    };
    (0..count).map(move |idx| {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `idx < count` on a valid list; the out-pointers are locals.
        let err =
            unsafe { rdsys::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            return None;
        }
        // SAFETY: librdkafka's header names are NUL-terminated and live as long as the message.
        let key: &'m [u8] = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| {
            // SAFETY: a non-null value points at `size` bytes owned by the message.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }
        });
        Some((key, value))
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(64)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
