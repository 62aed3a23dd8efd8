//! Rooms: RoomManager owns lifecycle and lookup; each room runs in its own RoomActor on one
//! of several arbiters (sharded by room id), so no single actor carries every room's traffic.

mod fanout;
mod manager;
mod peer;
pub(crate) mod ratings;
mod room;
mod writer;

pub(crate) use fanout::LocalFanout;
pub(crate) use manager::{
    Create, FindOrCreate, FlushAll, HandOverAll, LiveRooms, Resolve, RoomDeps, RoomManager, RoomRef,
};
pub(crate) use peer::{Peer, RemotePeer};
pub(crate) use room::{Act, Action, Announce, DeleteRoom, Join, JoinSpec, Leave, RoomActor};
