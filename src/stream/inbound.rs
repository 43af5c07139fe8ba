//! A consumed message copied into an [`Inbound`]. Headers are read straight from librdkafka:
//! rdkafka's own accessors (`Headers::get`, `try_get`, `iter`) panic on a key that is not UTF-8,
//! which would stop the service on that message at every restart. Such a header is left out and
//! named in [`Inbound::bad_header`], so that the message is dead-lettered with its reason.

use std::ffi::CStr;

use rdkafka::bindings as rdsys;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::types::RDKafkaRespErr;

use super::record::{Header, Inbound, Source};

/// Copies a consumed message; never panics, whatever its headers hold.
pub fn inbound(m: &BorrowedMessage<'_>) -> Inbound {
    let (headers, bad_header) = headers(m);
    Inbound {
        source: Source {
            topic: m.topic().to_string(),
            partition: m.partition(),
            offset: m.offset(),
            timestamp: m.timestamp().to_millis(),
        },
        key: m.key().map(<[u8]>::to_vec),
        payload: m.payload().map(<[u8]>::to_vec),
        headers,
        bad_header,
    }
}

/// The message's headers that can be represented (UTF-8 key; a null value stays `None`), and
/// what is wrong with the first one that cannot.
fn headers(m: &BorrowedMessage<'_>) -> (Vec<Header>, Option<String>) {
    let mut list: *mut rdsys::rd_kafka_headers_t = std::ptr::null_mut();
    // SAFETY: `m.ptr()` is the live message `m` borrows; librdkafka sets `list` to the
    // message's own header list (valid as long as the message), or returns an error without one.
    let err = unsafe { rdsys::rd_kafka_message_headers(m.ptr(), &mut list) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || list.is_null() {
        return (Vec::new(), None);
    }
    // SAFETY: `list` is the valid header list obtained above.
    let count = unsafe { rdsys::rd_kafka_header_cnt(list) };
    let mut out = Vec::with_capacity(count);
    let mut bad = None;
    for idx in 0..count {
        let mut name: *const std::ffi::c_char = std::ptr::null();
        let mut value: *const std::ffi::c_void = std::ptr::null();
        let mut size = 0usize;
        // SAFETY: `idx < count` on a valid list; the out-pointers are locals.
        let err =
            unsafe { rdsys::rd_kafka_header_get_all(list, idx, &mut name, &mut value, &mut size) };
        if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || name.is_null() {
            bad.get_or_insert_with(|| format!("header {idx} cannot be read"));
            continue;
        }
        // SAFETY: librdkafka's header names are NUL-terminated and live as long as the message.
        let key = unsafe { CStr::from_ptr(name) }.to_bytes();
        let value = (!value.is_null()).then(|| {
            // SAFETY: a non-null value points at `size` bytes owned by the message.
            unsafe { std::slice::from_raw_parts(value.cast::<u8>(), size) }.to_vec()
        });
        match std::str::from_utf8(key) {
            Ok(key) => out.push((key.to_string(), value)),
            Err(_) => {
                bad.get_or_insert_with(|| {
                    format!("header {idx}'s key is not UTF-8 (bytes {})", hex(key))
                });
            }
        }
    }
    (out, bad)
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .take(64)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}
