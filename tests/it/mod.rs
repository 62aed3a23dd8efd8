mod auth;
mod bad_input;
mod ops;
mod release;
mod scenarios;
mod slow;
mod support;
