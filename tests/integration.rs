//! The one integration-test binary: real pods on 127.0.0.1:0, real WebSocket clients
//! speaking protobuf, a real embedded store in a temp dir.

mod it;
