//! Writing the audit log: who did what to personal data or to the accounts, and when. Every feature
//! that must leave a trace calls [`record`] (or [`record_by_id`] when it has only the user's id),
//! inside the transaction of the change when there is one, so the change and its trace commit
//! together. The table is append-only (a trigger refuses updates); only the retention purge
//! deletes rows, after `audit_retention_days`. Admins read it (`supervisor::audit`).
//!
//! A detail never holds a password, a note's text or a caller's number: only what identifies the
//! act (a call id, a user name, a client address, counts).

use super::{Db, DbError};
use chrono::{DateTime, Utc};
use sqlx::{Any, Executor};

/// What was done. The stored names ([`AuditAction::as_str`]) are a public contract: admins filter
/// and read them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// Opened one call's record and timeline.
    OpenCall,
    /// Exported the call log as CSV (the filter is the detail).
    ExportCalls,
    /// The retention purge ran (the counts are the detail).
    RetentionPurge,
    /// Signed in (the client address is the detail).
    SignIn,
    /// A sign-in with a wrong name or password (no user id; the name given when it is a user's;
    /// the client address is the detail).
    SignInFailed,
    /// A screen-pop was sent to an operator: the call's facts and the notes of earlier calls
    /// from the same number (the detail: when it was shown, and how many earlier calls and notes).
    ScreenPop,
    /// Saved a call's note (the detail: its length, never its text).
    EditNote,
    /// Created a user (the detail: name, role, languages, areas).
    CreateUser,
    /// Disabled a user (their sessions end).
    DisableUser,
    /// Enabled a disabled user again.
    EnableUser,
    /// Set a user's password.
    SetPassword,
    /// Changed a user's role (the detail: from and to).
    ChangeRole,
    /// Changed a user's languages, areas or SIP target (the detail says which).
    ChangeUser,
    /// Claimed a callback request (the callback's id is the detail).
    ClaimCallback,
    /// Marked a claimed callback done.
    CallbackDone,
    /// Flagged a directory service as wrong during a call (the call is the row's call; the
    /// detail: service, flag and reason, never the note).
    FlagService,
    /// Marked a flag resolved.
    ResolveFlag,
    /// An organisation editor proposed a change to a service (the detail: service and change).
    ProposeDirectoryChange,
    /// An editor changed a service directly.
    ApplyDirectoryChange,
    /// An editor accepted a proposal.
    AcceptDirectoryChange,
    /// An editor rejected a proposal.
    RejectDirectoryChange,
    /// An editor restored the version a change replaced.
    RestoreDirectoryVersion,
    /// An editor confirmed a service unchanged (its `assured_date`).
    ConfirmDirectoryService,
    /// `helpline directory import` replaced the directory (the detail: source and services).
    ImportDirectory,
    /// `helpline directory export` wrote the directory out (the detail: target and services).
    ExportDirectory,
    /// Played (downloaded) a callback's voice message (the callback's id is the detail).
    PlayVoicemail,
    /// A supervisor listened to a live call (the caller and the operator do not hear them).
    Listen,
    /// A supervisor whispered to the operator of a live call (the caller does not hear them).
    Whisper,
    /// A supervisor barged into a live call (a three-way call).
    Barge,
    /// A supervisor stopped listening, whispering or barging in.
    MonitorEnd,
    /// An operator invited a mediator into their call (the mediator's name is the detail).
    MediatorInvite,
    /// A mediator joined a call (a three-way call).
    MediatorJoin,
    /// A mediator declined a call or left it.
    MediatorLeave,
    /// The operator left a call to its mediator (the mediator's name is the detail).
    OperatorLeave,
    /// An operator dialled an outside interpreter through the SIP trunk into their call (the
    /// masked number is the detail; the number itself is never stored).
    InterpreterDial,
    /// The outside interpreter answered and joined the call (the masked number is the detail).
    InterpreterJoin,
    /// The outside interpreter's call is over: not reached (why is the detail: `busy`,
    /// `no_answer`, …) or hung up (`ended`).
    InterpreterLeave,
    /// An operator asked a colleague to a consultation on their call, the caller on hold (the
    /// colleague's name is the detail).
    ConsultInvite,
    /// The consulted colleague joined.
    ConsultJoin,
    /// The consultation is over without a transfer: declined, left, or the operator went back to
    /// the caller (the colleague's name is the detail when the operator ended it).
    ConsultLeave,
    /// The operator handed the call over to the consulted colleague and left (the warm
    /// transfer; the colleague's name is the detail).
    Transfer,
    /// The operator handed the caller over to another queue and left (the blind hand-over; the
    /// queue, `fr` or `fr/lavoro`, is the detail).
    HandOver,
    /// The call's operator marked the caller's spoken refusal to be recorded.
    RecordingRefused,
    /// The call's operator started recording the call (the recording's id is the detail).
    RecordingStart,
    /// The call's operator stopped recording the call (the recording's id is the detail).
    RecordingStop,
    /// A supervisor played (downloaded) a call's recording (the recording's id is the detail).
    PlayRecording,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::OpenCall => "open_call",
            AuditAction::ExportCalls => "export_calls",
            AuditAction::RetentionPurge => "retention_purge",
            AuditAction::SignIn => "sign_in",
            AuditAction::SignInFailed => "sign_in_failed",
            AuditAction::ScreenPop => "screen_pop",
            AuditAction::EditNote => "edit_note",
            AuditAction::CreateUser => "create_user",
            AuditAction::DisableUser => "disable_user",
            AuditAction::EnableUser => "enable_user",
            AuditAction::SetPassword => "set_password",
            AuditAction::ChangeRole => "change_role",
            AuditAction::ChangeUser => "change_user",
            AuditAction::ClaimCallback => "claim_callback",
            AuditAction::CallbackDone => "callback_done",
            AuditAction::FlagService => "flag_service",
            AuditAction::ResolveFlag => "resolve_flag",
            AuditAction::ProposeDirectoryChange => "propose_directory_change",
            AuditAction::ApplyDirectoryChange => "apply_directory_change",
            AuditAction::AcceptDirectoryChange => "accept_directory_change",
            AuditAction::RejectDirectoryChange => "reject_directory_change",
            AuditAction::RestoreDirectoryVersion => "restore_directory_version",
            AuditAction::ConfirmDirectoryService => "confirm_directory_service",
            AuditAction::ImportDirectory => "import_directory",
            AuditAction::ExportDirectory => "export_directory",
            AuditAction::PlayVoicemail => "play_voicemail",
            AuditAction::Listen => "listen",
            AuditAction::Whisper => "whisper",
            AuditAction::Barge => "barge",
            AuditAction::MonitorEnd => "monitor_end",
            AuditAction::MediatorInvite => "mediator_invite",
            AuditAction::MediatorJoin => "mediator_join",
            AuditAction::MediatorLeave => "mediator_leave",
            AuditAction::OperatorLeave => "operator_leave",
            AuditAction::InterpreterDial => "interpreter_dial",
            AuditAction::InterpreterJoin => "interpreter_join",
            AuditAction::InterpreterLeave => "interpreter_leave",
            AuditAction::ConsultInvite => "consult_invite",
            AuditAction::ConsultJoin => "consult_join",
            AuditAction::ConsultLeave => "consult_leave",
            AuditAction::Transfer => "transfer",
            AuditAction::HandOver => "hand_over",
            AuditAction::RecordingRefused => "recording_refused",
            AuditAction::RecordingStart => "recording_start",
            AuditAction::RecordingStop => "recording_stop",
            AuditAction::PlayRecording => "play_recording",
        }
    }
}

/// Who did it: a signed-in user, or the server itself (the scheduled purge, the CLI).
#[derive(Debug, Clone)]
pub struct Actor {
    pub user_id: Option<i64>,
    pub name: String,
}

impl Actor {
    /// The server or one of its commands (`helpline user add`, the scheduled purge…).
    pub fn system(name: &str) -> Actor {
        Actor { user_id: None, name: name.to_owned() }
    }

    /// A signed-in user.
    pub fn user(id: i64, name: &str) -> Actor {
        Actor { user_id: Some(id), name: name.to_owned() }
    }
}

/// What a failed sign-in under a name nobody has records as its name: the text typed may be a
/// password typed into the wrong field.
pub const UNKNOWN_NAME: &str = "(unknown name)";

/// Appends one row.
pub async fn record<'e, E>(
    exec: E,
    at: i64,
    actor: &Actor,
    action: AuditAction,
    call_id: Option<&str>,
    detail: &str,
) -> Result<(), DbError>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, user_id, user_name, action, call_id, detail) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(at)
    .bind(actor.user_id)
    .bind(&actor.name)
    .bind(action.as_str())
    .bind(call_id)
    .bind(detail)
    .execute(exec)
    .await?;
    Ok(())
}

/// Appends one row for the user with this id, their name read from `users` in the same statement
/// (for code that holds only the id, such as the ACD offering a call).
pub async fn record_by_id<'e, E>(
    exec: E,
    at: i64,
    user_id: i64,
    action: AuditAction,
    call_id: Option<&str>,
    detail: &str,
) -> Result<(), DbError>
where
    E: Executor<'e, Database = Any>,
{
    sqlx::query(
        "INSERT INTO audit_log (at, user_id, user_name, action, call_id, detail) \
         SELECT $1, $2, COALESCE((SELECT name FROM users WHERE id = $2), ''), $3, $4, $5",
    )
    .bind(at)
    .bind(user_id)
    .bind(action.as_str())
    .bind(call_id)
    .bind(detail)
    .execute(exec)
    .await?;
    Ok(())
}

/// A successful sign-in by `user` from the client address `addr`.
pub async fn signed_in(db: &Db, at: DateTime<Utc>, user: &Actor, addr: &str) -> Result<(), DbError> {
    let detail = serde_json::json!({ "addr": addr }).to_string();
    db.with_lock_turn(record(db.pool(), at.timestamp_millis(), user, AuditAction::SignIn, None, &detail)).await
}

/// A failed sign-in under the name `name` from the client address `addr`. The row has no user id
/// (nothing was proved) and keeps the name only when it is a user's, else [`UNKNOWN_NAME`]; never
/// the password.
pub async fn sign_in_failed(db: &Db, at: DateTime<Utc>, name: &str, addr: &str) -> Result<(), DbError> {
    let detail = serde_json::json!({ "addr": addr }).to_string();
    let insert = sqlx::query(
        "INSERT INTO audit_log (at, user_id, user_name, action, call_id, detail) \
         SELECT $1, NULL, COALESCE((SELECT name FROM users WHERE name = $2), $3), $4, NULL, $5",
    )
    .bind(at.timestamp_millis())
    .bind(name)
    .bind(UNKNOWN_NAME)
    .bind(AuditAction::SignInFailed.as_str())
    .bind(detail)
    .execute(db.pool());
    db.with_lock_turn(insert).await?;
    Ok(())
}
