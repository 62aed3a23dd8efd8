use bytes::Bytes;
use prost::Message;

use crate::v1::{envelope::Body, Envelope, Error, ErrorCode};

/// Why an inbound frame could not be turned into an Envelope.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    /// The bytes are not a valid protobuf Envelope.
    #[error("frame is not a valid Envelope: {0}")]
    Malformed(String),
    /// The Envelope has no body, or one this build does not know.
    #[error("envelope has no known body")]
    UnknownBody,
}

impl FrameError {
    /// The wire code for this failure.
    pub fn code(&self) -> ErrorCode {
        match self {
            FrameError::Malformed(_) => ErrorCode::MalformedFrame,
            FrameError::UnknownBody => ErrorCode::UnknownMessage,
        }
    }
}

/// Decodes one binary frame. An unknown oneof field decodes with no body, so it is rejected
/// here rather than silently ignored.
pub fn decode_envelope(frame: &[u8]) -> Result<(u64, Body), FrameError> {
    let env = Envelope::decode(frame).map_err(|e| FrameError::Malformed(e.to_string()))?;
    match env.body {
        Some(body) => Ok((env.request_id, body)),
        None => Err(FrameError::UnknownBody),
    }
}

/// Encodes one Envelope into a frame.
pub fn encode_envelope(request_id: u64, seq: u64, body: Body) -> Bytes {
    let env = Envelope {
        request_id,
        seq,
        body: Some(body),
    };
    Bytes::from(env.encode_to_vec())
}

/// Encodes a room event's body once, without its seq; see [`frame_with_seq`].
pub fn encode_body(body: Body) -> Bytes {
    encode_envelope(0, 0, body)
}

/// Builds the final frame of a room event: the Envelope `seq` field followed by the body
/// from [`encode_body`]. Protobuf fields may come in any order, so this is a valid Envelope,
/// and the body is encoded once however many members or pods receive it.
pub fn frame_with_seq(seq: u64, body: &[u8]) -> Bytes {
    let mut out = Vec::with_capacity(body.len() + 11);
    out.push(0x10); // field 2 (seq), wire type varint
    prost::encoding::encode_varint(seq, &mut out);
    out.extend_from_slice(body);
    Bytes::from(out)
}

/// The seq of a frame built by [`frame_with_seq`], read from its first field.
pub fn frame_seq(frame: &[u8]) -> Option<u64> {
    let mut rest = frame.strip_prefix(&[0x10])?;
    prost::encoding::decode_varint(&mut rest).ok()
}

/// The request id of a frame from [`encode_envelope`], read from its first field (prost
/// writes fields in order, and leaves out a zero); 0 if it has none.
pub fn frame_request_id(frame: &[u8]) -> u64 {
    frame
        .strip_prefix(&[0x08])
        .and_then(|mut rest| prost::encoding::decode_varint(&mut rest).ok())
        .unwrap_or(0)
}

/// Encodes an Error frame answering `request_id`.
pub fn error_envelope(request_id: u64, code: ErrorCode, message: impl Into<String>) -> Bytes {
    error_envelope_after(request_id, code, message, 0)
}

/// An Error frame saying when a retry may pass (`retry_after_ms`, 0 for no hint).
pub fn error_envelope_after(
    request_id: u64,
    code: ErrorCode,
    message: impl Into<String>,
    retry_after_ms: u32,
) -> Bytes {
    encode_envelope(
        request_id,
        0,
        Body::Error(Error {
            code: code as i32,
            message: message.into(),
            retry_after_ms,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v1::Ping;

    #[test]
    fn request_id_is_read_from_the_frame() {
        let answer = error_envelope(300, ErrorCode::Unavailable, "x");
        assert_eq!(frame_request_id(&answer), 300);
        let event = frame_with_seq(9, &encode_body(Body::Ping(Ping { client_time_ms: 5 })));
        assert_eq!(frame_request_id(&event), 0);
        assert_eq!(
            frame_request_id(&encode_envelope(0, 4, Body::Ping(Ping::default()))),
            0
        );
    }

    #[test]
    fn round_trip() {
        let bytes = encode_envelope(7, 0, Body::Ping(Ping { client_time_ms: 5 }));
        let (id, body) = decode_envelope(&bytes).unwrap();
        assert_eq!(id, 7);
        assert_eq!(body, Body::Ping(Ping { client_time_ms: 5 }));
    }

    #[test]
    fn seq_prefix_makes_a_valid_envelope() {
        let body = encode_body(Body::Ping(Ping { client_time_ms: 9 }));
        let frame = frame_with_seq(300, &body);
        let env = Envelope::decode(&frame[..]).unwrap();
        assert_eq!(env.seq, 300);
        assert_eq!(env.body, Some(Body::Ping(Ping { client_time_ms: 9 })));
    }

    #[test]
    fn garbage_and_unknown_bodies_are_typed_errors() {
        assert!(matches!(
            decode_envelope(&[0xff, 0xff, 0xff]),
            Err(FrameError::Malformed(_))
        ));
        // Field 999, varint 1: a oneof member this build does not know.
        let unknown = [0xb8, 0x3e, 0x01];
        assert_eq!(decode_envelope(&unknown), Err(FrameError::UnknownBody));
    }
}
