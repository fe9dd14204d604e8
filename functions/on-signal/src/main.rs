// The instrumented invocation future nests the handler's futures deeper than the default limit allows.
#![recursion_limit = "256"]

use anyhow::Context;
use gameforge_aws::sqs_batch::Payload;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    gameforge_aws::telemetry::init_json("on-signal");
    let settings = on_signal::settings::Settings::from_env().context("on-signal configuration")?;
    let config = gameforge_aws::config::load().await;
    let handler = on_signal::deployed_handler(&settings, &config);
    let handler = &handler;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<Payload>| {
        let span = gameforge_aws::telemetry::invocation_span(
            &event.context.request_id,
            event.context.xray_trace_id.as_deref(),
        );
        async move {
            let deadline = gameforge_aws::invocation::Deadline::from_epoch_millis(event.context.deadline);
            handler.handle_until(event.payload, deadline).await.map_err(lambda_runtime::Error::from)
        }
        .instrument(span)
    }))
    .await
}
