mod auth;
mod bad_input;
mod ops;
mod scenarios;
mod support;
