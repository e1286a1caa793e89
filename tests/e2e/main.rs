//! End-to-end tests against the real server: in-process on port 0 (`spawn_app`) and the real
//! `helpline` binary as a child process. Each test gets a fresh database: a temp SQLite file, or a
//! new PostgreSQL database when `HELPLINE_TEST_DATABASE_URL` is set (`scripts/test` sets it).

mod helpers;

mod accounts;
mod assets;
mod authz;
mod callback_calls;
mod callback_carrier;
mod callbacks;
mod carrier;
mod carrier_standin;
mod cli;
mod cluster;
mod console;
mod console_client;
mod directory;
mod directory_edit;
mod edge;
mod handover;
mod health;
mod interpreter;
mod languages;
mod layers;
mod mediation;
mod migrations;
mod nodes;
mod pg_tls;
mod privacy;
mod recording;
mod session;
mod sip;
mod sip_edge;
mod supervisor;
mod supervisor_authz;
mod texts;
mod tls;
mod voicemail_carriers;
mod webhook_json;
mod webhook_twiml;
