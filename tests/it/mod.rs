mod auth;
mod bad_input;
mod cluster;
mod ops;
mod release;
mod scenarios;
mod slow;
mod support;
