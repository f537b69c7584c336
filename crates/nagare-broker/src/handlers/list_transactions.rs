//! ListTransactions (key 66, KIP-664; v1 adds KIP-994's duration filter, v2 KIP-1152's
//! transactional-id pattern, a regular expression the whole id must match, as Java's
//! `Matcher.matches`; an invalid one is INVALID_REGULAR_EXPRESSION): the transactions of
//! every `__transaction_state` shard this broker owns, filtered by state, producer id and
//! duration, and — as Kafka — only the ids the principal may DESCRIBE. A shard still loading
//! makes the answer COORDINATOR_LOAD_IN_PROGRESS; unknown state names are echoed back in
//! `unknown_state_filters`.

use std::sync::Arc;

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ApiKey, ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use nagare_transaction_coordinator::{TransactionState as State, TxnRequest, TxnResponse};

use super::HandlerResult;
use super::{respond, sb, Request};
use crate::authorizer::{AclOperation, Resource};
use crate::network::Reply;
use crate::transaction_coordinator::request_context;
use crate::Broker;
use nagare_protocol::error::ResponseError;

/// Supported versions.
pub const VERSIONS: (i16, i16) = (0, 2);

/// The state names a filter may use.
const STATES: [State; 8] = [
    State::Empty,
    State::Ongoing,
    State::PrepareCommit,
    State::PrepareAbort,
    State::CompleteCommit,
    State::CompleteAbort,
    State::Dead,
    State::PrepareEpochFence,
];

/// Handles ListTransactions.
pub async fn handle(broker: &Arc<Broker>, mut req: Request) -> HandlerResult {
    let r: ListTransactionsRequest = req.decode()?;
    let v = req.version();
    let corr = req.correlation_id();
    let (known, unknown): (Vec<String>, Vec<String>) = r
        .state_filters
        .iter()
        .map(|s| s.to_string())
        .partition(|s| STATES.iter().any(|st| st.name() == s));
    // KIP-1152: null or empty lists every id.
    let pattern = match r
        .transactional_id_pattern
        .as_deref()
        .filter(|p| v >= 2 && !p.is_empty())
    {
        None => None,
        Some(p) => match regex::Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => Some(re),
            Err(e) => {
                tracing::debug!(pattern = p, error = %e, "ListTransactions: invalid transactional id pattern");
                let resp = ListTransactionsResponse::default()
                    .with_error_code(ResponseError::InvalidRegularExpression.code());
                return Ok(Reply::Now(respond(
                    ApiKey::ListTransactions,
                    v,
                    corr,
                    &resp,
                )));
            }
        },
    };
    let ctx = request_context(&req);
    let mut waiting = Vec::new();
    for p in broker.transactions.owned_shards() {
        waiting.push(
            broker
                .transactions
                .handle_on(
                    p,
                    ctx.clone(),
                    TxnRequest::List {
                        state_filters: known.clone(),
                        producer_id_filters: r.producer_id_filters.iter().map(|p| p.0).collect(),
                        duration_filter_ms: if v >= 1 { r.duration_filter } else { -1 },
                    },
                )
                .await,
        );
    }
    // Unknown states match nothing: with only unknown filters the answer is empty.
    let nothing_matches = known.is_empty() && !unknown.is_empty();
    let broker = broker.clone();
    Ok(Reply::Later(Box::pin(async move {
        let mut resp = ListTransactionsResponse::default()
            .with_unknown_state_filters(unknown.into_iter().map(sb).collect());
        for p in waiting {
            match p.await {
                TxnResponse::List {
                    error,
                    transactions,
                } => {
                    if error != 0 {
                        resp.error_code = error;
                        continue;
                    }
                    if nothing_matches {
                        continue;
                    }
                    for t in transactions {
                        if pattern
                            .as_ref()
                            .is_some_and(|re| !re.is_match(&t.transactional_id))
                        {
                            continue;
                        }
                        if !broker.authorize(
                            &req.ctx,
                            AclOperation::Describe,
                            &Resource::transactional_id(&t.transactional_id),
                        ) {
                            continue;
                        }
                        resp.transaction_states.push(
                            TransactionState::default()
                                .with_transactional_id(TransactionalId(sb(t.transactional_id)))
                                .with_producer_id(ProducerId(t.producer_id))
                                .with_transaction_state(sb(t.state.name())),
                        );
                    }
                }
                other => {
                    tracing::error!(
                        ?other,
                        "unexpected transaction coordinator answer to ListTransactions"
                    );
                    resp.error_code = ResponseError::UnknownServerError.code();
                }
            }
        }
        if resp.error_code != 0 {
            resp.transaction_states.clear();
        }
        respond(ApiKey::ListTransactions, v, corr, &resp)
    })))
}
