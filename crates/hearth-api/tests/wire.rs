//! The whole request path — signature, routing, validation, dispatch and
//! encoding — exercised through the router without a socket.

mod support;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use hearth_api::Credentials;
use serde_json::json;
use support::Harness;

const BASE: &str = "arn:aws:lambda:us-east-1:aws:microvm-image:al2023-1";

fn image_body(name: &str) -> String {
    json!({
        "name": name,
        "baseImageArn": BASE,
        "buildRoleArn": "arn:aws:iam::123456789012:role/build",
        "codeArtifact": {"uri": "s3://bucket/app.zip"},
        "tags": {"team": "hearth"},
    })
    .to_string()
}

async fn run_microvm(h: &Harness) -> String {
    let created = h
        .call("POST", "/2025-09-09/microvm-images", &image_body("app"))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{:?}", created.body);
    let run = h
        .call(
            "POST",
            "/2025-09-09/microvms",
            r#"{"imageIdentifier":"app"}"#,
        )
        .await;
    assert_eq!(run.status, StatusCode::OK, "{:?}", run.body);
    run.body["microvmId"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn a_microvm_runs_suspends_and_resumes() {
    let h = Harness::new();
    let id = run_microvm(&h).await;
    assert!(id.starts_with("microvm-") && id.len() == 40, "{id}");

    let suspended = h
        .call("POST", &format!("/2025-09-09/microvms/{id}/suspend"), "")
        .await;
    assert_eq!(suspended.status, StatusCode::OK);
    assert_eq!(suspended.body, json!({}));

    let got = h
        .call("GET", &format!("/2025-09-09/microvms/{id}"), "")
        .await;
    assert_eq!(got.body["state"], "SUSPENDED");
    assert!(got.body["startedAt"].is_number());

    let resumed = h
        .call("POST", &format!("/2025-09-09/microvms/{id}/resume"), "")
        .await;
    assert_eq!(resumed.status, StatusCode::OK);
}

#[tokio::test]
async fn suspending_a_suspended_microvm_conflicts() {
    let h = Harness::new();
    let id = run_microvm(&h).await;
    h.call("POST", &format!("/2025-09-09/microvms/{id}/suspend"), "")
        .await;

    let again = h
        .call("POST", &format!("/2025-09-09/microvms/{id}/suspend"), "")
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_type.as_deref(), Some("ConflictException"));
    assert_eq!(again.body["__type"], "ConflictException");
    assert_eq!(again.body["resourceId"], id.as_str());
}

#[tokio::test]
async fn an_unknown_microvm_is_not_found() {
    let h = Harness::new();
    let reply = h.call("GET", "/2025-09-09/microvms/microvm-0000", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.error_type.as_deref(),
        Some("ResourceNotFoundException")
    );
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("microvm-0000"));
    assert!(reply.has_request_id);
}

#[tokio::test]
async fn a_constraint_violation_names_the_field() {
    let h = Harness::new();
    let body = r#"{"imageIdentifier":"app","maximumDurationInSeconds":28801}"#;
    let reply = h.call("POST", "/2025-09-09/microvms", body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.error_type.as_deref(), Some("ValidationException"));
    assert_eq!(
        reply.body["message"],
        "1 validation error detected: Value at 'maximumDurationInSeconds' failed to satisfy \
         constraint: Member must have value less than or equal to 28800"
    );
}

#[tokio::test]
async fn query_parameters_are_validated() {
    let h = Harness::new();
    let reply = h
        .call("GET", "/2025-09-09/microvms?maxResults=51", "")
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("'maxResults'"));

    let reply = h
        .call("GET", "/2025-09-09/microvms?maxResults=ten", "")
        .await;
    assert!(reply.body["message"]
        .as_str()
        .unwrap()
        .contains("Member must be an integer"));
}

#[tokio::test]
async fn tags_round_trip_through_the_lambda_paths() {
    let h = Harness::new();
    h.call("POST", "/2025-09-09/microvm-images", &image_body("tagged"))
        .await;
    let arn = "arn%3Aaws%3Alambda%3Aus-east-1%3A000000000000%3Amicrovm-image%3Atagged";

    let tagged = h
        .call(
            "POST",
            &format!("/2017-03-31/tags/{arn}"),
            r#"{"Tags":{"env":"dev"}}"#,
        )
        .await;
    assert_eq!(tagged.status, StatusCode::NO_CONTENT);
    assert_eq!(tagged.body, serde_json::Value::Null);

    let untagged = h
        .call(
            "DELETE",
            &format!("/2017-03-31/tags/{arn}?tagKeys=team"),
            "",
        )
        .await;
    assert_eq!(untagged.status, StatusCode::NO_CONTENT);

    let listed = h.call("GET", &format!("/2017-03-31/tags/{arn}"), "").await;
    assert_eq!(listed.body, json!({"Tags": {"env": "dev"}}));
}

#[tokio::test]
async fn a_retried_run_with_the_same_token_returns_the_same_microvm() {
    let h = Harness::new();
    h.call("POST", "/2025-09-09/microvm-images", &image_body("app"))
        .await;
    let body = r#"{"imageIdentifier":"app","clientToken":"token-1"}"#;
    let first = h.call("POST", "/2025-09-09/microvms", body).await;
    let second = h.call("POST", "/2025-09-09/microvms", body).await;
    assert_eq!(first.body["microvmId"], second.body["microvmId"]);

    let listed = h.call("GET", "/2025-09-09/microvms", "").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn unsigned_requests_are_refused() {
    let h = Harness::new();
    let request = Request::get("/2025-09-09/microvms")
        .body(Body::empty())
        .unwrap();
    let reply = h.send(request).await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.error_type.as_deref(),
        Some("MissingAuthenticationTokenException")
    );
}

#[tokio::test]
async fn requests_signed_with_another_secret_are_refused() {
    let h = Harness::new();
    let wrong = Credentials::new(h.credentials.access_key_id.clone(), "x".repeat(40));
    let reply = h
        .call_signed_by(&wrong, "GET", "/2025-09-09/microvms", "")
        .await;
    assert_eq!(reply.status, StatusCode::FORBIDDEN);
    assert_eq!(
        reply.error_type.as_deref(),
        Some("InvalidSignatureException")
    );
}

#[tokio::test]
async fn unknown_routes_are_unknown_operations() {
    let h = Harness::new();
    let reply = h.call("GET", "/2025-09-09/nothing", "").await;
    assert_eq!(reply.status, StatusCode::NOT_FOUND);
    assert_eq!(
        reply.error_type.as_deref(),
        Some("UnknownOperationException")
    );
}

#[tokio::test]
async fn list_pages_carry_opaque_tokens() {
    let h = Harness::new();
    for name in ["a", "b", "c"] {
        h.call("POST", "/2025-09-09/microvm-images", &image_body(name))
            .await;
    }
    let first = h
        .call("GET", "/2025-09-09/microvm-images?maxResults=2", "")
        .await;
    assert_eq!(first.body["items"].as_array().unwrap().len(), 2);
    let token = first.body["nextToken"].as_str().expect("a token");

    let second = h
        .call(
            "GET",
            &format!("/2025-09-09/microvm-images?maxResults=2&nextToken={token}"),
            "",
        )
        .await;
    assert_eq!(second.body["items"][0]["name"], "c");
    assert!(second.body.get("nextToken").is_none());

    let forged = h
        .call("GET", "/2025-09-09/microvm-images?nextToken=forged", "")
        .await;
    assert_eq!(forged.error_type.as_deref(), Some("ValidationException"));
}
