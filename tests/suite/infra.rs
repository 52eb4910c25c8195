//! `infra/template.yaml` agrees with the code: table key schemas, TTL, and least-privilege
//! access (the audit table is append-only).

use gatehouse::store::Table;
use gatehouse::store::schema::table_schema;
use serde_yaml::Value;

fn template() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../infra/template.yaml");
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn keys(schema: &Value) -> (String, String) {
    let mut hash = String::new();
    let mut range = String::new();
    for k in schema.as_sequence().unwrap() {
        let name = k["AttributeName"].as_str().unwrap().to_owned();
        match k["KeyType"].as_str().unwrap() {
            "HASH" => hash = name,
            "RANGE" => range = name,
            other => panic!("key type {other}"),
        }
    }
    (hash, range)
}

#[test]
fn the_template_declares_the_key_schema_the_code_uses() {
    let t = template();
    for table in [Table::Main, Table::Audit] {
        let schema = table_schema(table);
        let props = &t["Resources"][schema.logical_id]["Properties"];
        assert_eq!(
            keys(&props["KeySchema"]),
            (schema.hash_key.to_owned(), schema.range_key.to_owned())
        );
        let mut declared: Vec<String> = props["AttributeDefinitions"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| {
                assert_eq!(a["AttributeType"], "S");
                a["AttributeName"].as_str().unwrap().to_owned()
            })
            .collect();
        declared.sort();
        let mut expected: Vec<String> = schema
            .key_attributes()
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        expected.sort();
        assert_eq!(declared, expected, "{}", schema.logical_id);
        let indexes = props["GlobalSecondaryIndexes"].as_sequence().unwrap();
        assert_eq!(indexes.len(), schema.indexes.len());
        for i in &schema.indexes {
            let gsi = indexes
                .iter()
                .find(|g| g["IndexName"] == i.name)
                .unwrap_or_else(|| panic!("index {}", i.name));
            assert_eq!(
                keys(&gsi["KeySchema"]),
                (i.hash_key.to_owned(), i.range_key.to_owned())
            );
            assert_eq!(gsi["Projection"]["ProjectionType"], "ALL");
        }
        assert_eq!(
            props["TimeToLiveSpecification"]["AttributeName"],
            schema.ttl_attribute
        );
        assert_eq!(props["TimeToLiveSpecification"]["Enabled"], true);
        assert_eq!(props["BillingMode"], "PAY_PER_REQUEST");
        assert_eq!(
            props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true
        );
    }
}

fn mentions(v: &Value, logical_id: &str) -> bool {
    match v {
        Value::String(s) => s == logical_id || s.contains(&format!("${{{logical_id}")),
        Value::Sequence(s) => s.iter().any(|x| mentions(x, logical_id)),
        Value::Mapping(m) => m.iter().any(|(_, x)| mentions(x, logical_id)),
        _ => false,
    }
}

/// The Allow statements of every function's policies, with the function.
fn statements(t: &Value) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        for policy in res["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            for st in policy["Statement"].as_sequence().into_iter().flatten() {
                // The Deny statements are checked on their own (`only_key_rotation_…`).
                if st["Effect"] == "Deny" {
                    continue;
                }
                out.push((name.as_str().unwrap().to_owned(), st.clone()));
            }
        }
    }
    out
}

fn actions(st: &Value) -> Vec<String> {
    match &st["Action"] {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(s) => s.iter().map(|a| a.as_str().unwrap().to_owned()).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn no_function_may_change_or_delete_audit_events() {
    let t = template();
    let sts = statements(&t);
    assert!(
        !sts.is_empty(),
        "functions carry inline least-privilege policies"
    );
    for (function, st) in sts {
        if !mentions(&st["Resource"], "AuditTable") {
            continue;
        }
        for a in actions(&st) {
            assert!(
                matches!(
                    a.as_str(),
                    "dynamodb:PutItem" | "dynamodb:Query" | "dynamodb:ConditionCheckItem"
                ),
                "{function} may {a} on the audit table"
            );
        }
    }
}

/// UpdateItem exists only to count refusals while locked, and to record an API token's
/// use: it may change nothing but the tally attributes of a failure budget, or when and from
/// where a token was last used, on the main table.
#[test]
fn update_item_may_only_count_refusals_and_record_token_use() {
    let t = template();
    let mut seen = 0;
    for (function, st) in statements(&t) {
        if !actions(&st).iter().any(|a| a == "dynamodb:UpdateItem") {
            continue;
        }
        assert_eq!(actions(&st), ["dynamodb:UpdateItem"], "{function}");
        assert!(mentions(&st["Resource"], "MainTable"), "{function}");
        assert!(!mentions(&st["Resource"], "AuditTable"), "{function}");
        let allowed: Vec<&str> =
            st["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
                .as_sequence()
                .unwrap_or_else(|| panic!("{function}: UpdateItem without an attribute condition"))
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
        if allowed.contains(&"last_used_at") {
            assert_eq!(
                allowed,
                ["pk", "sk", "last_used_at", "last_used_ip"],
                "{function}"
            );
            continue;
        }
        seen += 1;
        assert_eq!(
            allowed,
            [
                "pk",
                "sk",
                "refused",
                "first_refused_at",
                "last_refused_at",
                "ttl"
            ],
            "{function}"
        );
    }
    // Every family that checks a password counts refusals: all but `audit`, which only reads.
    assert_eq!(
        seen,
        gatehouse::api::FAMILIES
            .iter()
            .filter(|f| f.function != "audit")
            .count(),
        "every function that checks passwords counts refusals"
    );
}

#[test]
fn no_wildcards_in_function_policies() {
    for (function, st) in statements(&template()) {
        for a in actions(&st) {
            assert!(!a.contains('*'), "{function}: {a}");
        }
        assert!(
            !matches!(&st["Resource"], Value::String(s) if s == "*"),
            "{function}: Resource *"
        );
    }
}

/// Every function of the template and its binary crate, from the registries: the families
/// and the functions API Gateway routes nothing to.
fn functions() -> Vec<(&'static str, &'static str)> {
    let families = gatehouse::api::FAMILIES
        .iter()
        .map(|f| (f.resource, f.function));
    let events = gatehouse::api::EVENT_FUNCTIONS
        .iter()
        .map(|f| (f.resource, f.function));
    families.chain(events).collect()
}

#[test]
fn each_function_is_built_with_cargo_lambda_from_its_own_binary() {
    let t = template();
    for (resource, binary) in functions() {
        let f = &t["Resources"][resource];
        assert_eq!(
            f["Metadata"]["BuildMethod"], "rust-cargolambda",
            "{resource}"
        );
        assert_eq!(
            f["Metadata"]["BuildProperties"]["Binary"], binary,
            "{resource}"
        );
        let manifest = format!(
            "{}/../functions/{binary}/Cargo.toml",
            env!("CARGO_MANIFEST_DIR")
        );
        assert!(std::path::Path::new(&manifest).exists(), "{manifest}");
    }
}

#[test]
fn every_routed_operation_has_an_api_gateway_route_to_its_function() {
    // The families' routers define what each function answers; API Gateway must send exactly
    // those routes to it (the local-only ones never).
    let t = template();
    let families = gatehouse::api::FAMILIES
        .iter()
        .map(|f| (f.resource, (f.routes)()));
    for (resource, routes) in families {
        let (_, doc) = routes.split_for_parts();
        let mut expected: Vec<(String, String)> = Vec::new();
        for (path, item) in &doc.paths.paths {
            let item = serde_json::to_value(item).unwrap();
            for method in item.as_object().unwrap().keys() {
                expected.push((method.to_uppercase(), path.clone()));
            }
        }
        let mut declared: Vec<(String, String)> = t["Resources"][resource]["Properties"]["Events"]
            .as_mapping()
            .unwrap()
            .values()
            .map(|e| {
                (
                    e["Properties"]["Method"].as_str().unwrap().to_owned(),
                    e["Properties"]["Path"].as_str().unwrap().to_owned(),
                )
            })
            .filter(|(_, p)| p != "/openapi.json" && !p.starts_with("/console"))
            .collect();
        expected.sort();
        declared.sort();
        assert_eq!(declared, expected, "{resource}");
    }
}

#[test]
fn the_deployed_openapi_document_lists_exactly_the_api_gateway_routes() {
    let t = template();
    let mut declared: Vec<(String, String)> = Vec::new();
    for (_, r) in t["Resources"].as_mapping().unwrap() {
        let Some(events) = r["Properties"]["Events"].as_mapping() else {
            continue;
        };
        for e in events.values().filter(|e| e["Type"] == "HttpApi") {
            declared.push((
                e["Properties"]["Method"].as_str().unwrap().to_owned(),
                e["Properties"]["Path"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let doc = serde_json::to_value(gatehouse::api::deployed_openapi()).unwrap();
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.push((method.to_uppercase(), path.clone()));
        }
    }
    // The web console's shell and files, which `login` serves, are pages, not operations of
    // the API (docs/console.md).
    for path in ["/console", "/console/{proxy+}"] {
        documented.push(("GET".to_owned(), path.to_owned()));
    }
    declared.sort();
    documented.sort();
    assert_eq!(declared, documented);
}

/// Exactly the functions whose code mails may send mail, and only from the configured
/// identity and address.
#[test]
fn only_functions_that_mail_may_send_and_only_from_the_configured_identity() {
    let t = template();
    let all = statements(&t);
    for (resource, binary) in functions() {
        let main = std::fs::read_to_string(format!(
            "{}/../functions/{binary}/src/main.rs",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let mails = main.contains("for_lambda_with_mail");
        let ses: Vec<&Value> = all
            .iter()
            .filter(|(r, st)| r == resource && actions(st).iter().any(|a| a.starts_with("ses:")))
            .map(|(_, st)| st)
            .collect();
        assert_eq!(ses.len(), usize::from(mails), "{resource}");
        for st in ses {
            assert_eq!(actions(st), ["ses:SendEmail"], "{resource}");
            let resources =
                serde_json::to_string(&serde_json::to_value(&st["Resource"]).unwrap()).unwrap();
            assert!(
                resources.contains(":identity/${Identity}"),
                "{resource}: {resources}"
            );
            assert!(
                resources.contains("MailIdentity"),
                "{resource}: {resources}"
            );
            assert!(
                resources.contains(":identity/${MailFromAddress}"),
                "{resource}: {resources}"
            );
            assert!(!resources.contains('*'), "{resource}: {resources}");
            assert_eq!(
                st["Condition"]["StringEquals"]["ses:FromAddress"]["Ref"], "MailFromAddress",
                "{resource}"
            );
        }
    }
    let env = &t["Globals"]["Function"]["Environment"]["Variables"]["GATEHOUSE_MAIL_FROM"];
    assert!(
        env["Fn::Sub"]
            .as_str()
            .is_some_and(|s| s.contains("<${MailFromAddress}>"))
    );
}

/// A flood is refused at the edge: the HTTP API throttles every route by default, from
/// parameters the operator sizes.
#[test]
fn the_http_api_throttles_every_route() {
    let t = template();
    let settings = &t["Resources"]["HttpApi"]["Properties"]["DefaultRouteSettings"];
    assert_eq!(settings["ThrottlingRateLimit"]["Ref"], "ThrottleRateLimit");
    assert_eq!(
        settings["ThrottlingBurstLimit"]["Ref"],
        "ThrottleBurstLimit"
    );
    for p in ["ThrottleRateLimit", "ThrottleBurstLimit"] {
        assert_eq!(t["Parameters"][p]["Type"], "Number", "{p}");
    }
}

/// The functions' log level is one of four known values; no trace level, at which the
/// Lambda runtime logs raw events with their passwords.
#[test]
fn the_log_level_is_limited_to_known_values() {
    let t = template();
    let allowed: Vec<&str> = t["Parameters"]["LogLevel"]["AllowedValues"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(allowed, gatehouse::telemetry::LEVELS);
    let env = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(env["GATEHOUSE_LOG_LEVEL"]["Ref"], "LogLevel");
    assert!(env.get("RUST_LOG").is_none());
}

/// CORS is off unless the operator lists origins; then API Gateway answers preflights for
/// exactly those, with the methods and headers the API uses and no credentials.
#[test]
fn cors_is_off_unless_origins_are_listed() {
    let t = template();
    assert_eq!(t["Parameters"]["AllowedOrigins"]["Default"], "");
    let cors = &t["Resources"]["HttpApi"]["Properties"]["CorsConfiguration"]["Fn::If"];
    assert_eq!(cors[0], "CorsOn");
    assert_eq!(cors[2]["Ref"], "AWS::NoValue");
    let on = &cors[1];
    assert_eq!(on["AllowOrigins"]["Fn::Split"][1]["Ref"], "AllowedOrigins");
    let list = |v: &Value| -> Vec<String> {
        v.as_sequence()
            .unwrap()
            .iter()
            .map(|x| x.as_str().unwrap().to_owned())
            .collect()
    };
    for m in ["GET", "POST", "DELETE"] {
        assert!(list(&on["AllowMethods"]).contains(&m.to_owned()), "{m}");
    }
    for h in ["authorization", "content-type"] {
        assert!(list(&on["AllowHeaders"]).contains(&h.to_owned()), "{h}");
    }
    assert!(on.get("AllowCredentials").is_none());
}

/// One registry of functions: every function of the template and every crate under
/// `functions/` is a family of `api::FAMILIES` or a function of `api::EVENT_FUNCTIONS`, and
/// every one of those is both.
#[test]
fn the_template_the_workspace_and_the_registry_list_the_same_functions() {
    let t = template();
    let mut in_template: Vec<String> = t["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(_, r)| r["Type"] == "AWS::Serverless::Function")
        .map(|(name, _)| name.as_str().unwrap().to_owned())
        .collect();
    in_template.sort();
    let mut registered: Vec<String> = functions().iter().map(|(r, _)| (*r).to_owned()).collect();
    registered.sort();
    assert_eq!(in_template, registered);
    let dir = format!("{}/../functions", env!("CARGO_MANIFEST_DIR"));
    let mut crates: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    crates.sort();
    let mut binaries: Vec<String> = functions().iter().map(|(_, b)| (*b).to_owned()).collect();
    binaries.sort();
    assert_eq!(crates, binaries);
}

/// A function of `api::EVENT_FUNCTIONS` has no route on this stack's HTTP API (its events,
/// if any, are of another kind), and counts no refusals (it signs no one in).
#[test]
fn event_functions_are_not_routed() {
    let t = template();
    let all = statements(&t);
    for f in gatehouse::api::EVENT_FUNCTIONS {
        let props = &t["Resources"][f.resource]["Properties"];
        for (name, e) in props["Events"].as_mapping().into_iter().flatten() {
            assert_ne!(e["Type"], "HttpApi", "{}: {name:?}", f.resource);
        }
        let counts = all.iter().any(|(r, st)| {
            r == f.resource
                && serde_json::to_string(&serde_json::to_value(st).unwrap())
                    .unwrap()
                    .contains("refused")
        });
        assert!(!counts, "{}", f.resource);
        let family = gatehouse::api::FAMILIES
            .iter()
            .any(|fam| fam.resource == f.resource || fam.function == f.function);
        assert!(!family, "{} is in both registries", f.resource);
    }
}

/// The authorizer may read the main table, write an API token's use (a marker of a key and a
/// TTL, and the two use attributes), append the `token.used` event: no secret (it verifies with the
/// published keys), nothing else, and its ARN is exported for other stacks to attach.
#[test]
fn the_authorizer_may_read_and_record_token_use_only() {
    let t = template();
    let mut granted: Vec<(String, String)> = Vec::new();
    for (function, st) in statements(&t) {
        if function != "AuthorizerFunction" {
            continue;
        }
        assert_eq!(st["Effect"], "Allow");
        let on = if mentions(&st["Resource"], "MainTable") {
            "main"
        } else if mentions(&st["Resource"], "AuditTable") {
            "audit"
        } else {
            panic!("AuthorizerFunction: a statement on {:?}", st["Resource"]);
        };
        let condition = |attrs: &[&str]| {
            let allowed: Vec<&str> =
                st["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
                    .as_sequence()
                    .unwrap_or_else(|| panic!("{:?} without an attribute condition", st["Sid"]))
                    .iter()
                    .map(|v| v.as_str().unwrap())
                    .collect();
            assert_eq!(allowed, attrs, "{:?}", st["Sid"]);
        };
        for a in actions(&st) {
            match (on, a.as_str()) {
                ("main", "dynamodb:PutItem") => condition(&["pk", "sk", "ttl"]),
                ("main", "dynamodb:UpdateItem") => {
                    condition(&["pk", "sk", "last_used_at", "last_used_ip"]);
                }
                _ => assert!(st.get("Condition").is_none(), "{:?}", st["Sid"]),
            }
            granted.push((on.to_owned(), a));
        }
    }
    granted.sort();
    let expected: Vec<(String, String)> = [
        ("audit", "dynamodb:PutItem"),
        ("main", "dynamodb:BatchGetItem"),
        ("main", "dynamodb:GetItem"),
        ("main", "dynamodb:PutItem"),
        ("main", "dynamodb:UpdateItem"),
    ]
    .iter()
    .map(|(r, a)| ((*r).to_owned(), (*a).to_owned()))
    .collect();
    assert_eq!(granted, expected);
    let out = &t["Outputs"]["AuthorizerFunctionArn"];
    assert_eq!(out["Value"]["Fn::GetAtt"][0], "AuthorizerFunction");
    assert_eq!(out["Value"]["Fn::GetAtt"][1], "Arn");
    assert_eq!(
        out["Export"]["Name"]["Fn::Sub"],
        "${AWS::StackName}-AuthorizerFunctionArn"
    );
}

/// The actions each statement of `resource`'s policies grants, by what it is on: `main`,
/// `gsi1`, `audit`, `keys`, `bus`; every statement is an Allow.
fn granted(t: &Value, resource: &str) -> Vec<(String, String)> {
    let mut granted = Vec::new();
    for (function, st) in statements(t) {
        if function != resource {
            continue;
        }
        assert_eq!(st["Effect"], "Allow");
        let text = serde_json::to_string(&serde_json::to_value(&st["Resource"]).unwrap()).unwrap();
        let on = if text.contains("/index/gsi1") {
            "gsi1"
        } else if mentions(&st["Resource"], "MainTable") {
            "main"
        } else if mentions(&st["Resource"], "AuditTable") {
            "audit"
        } else if mentions(&st["Resource"], "SigningKeysSecret") {
            "signing"
        } else if mentions(&st["Resource"], "DataKeysSecret") {
            "data"
        } else if text.contains(":event-bus/") {
            "bus"
        } else {
            panic!("{resource}: a statement on {text}");
        };
        for a in actions(&st) {
            granted.push((on.to_owned(), a));
        }
    }
    granted.sort();
    granted
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(r, a)| ((*r).to_owned(), (*a).to_owned()))
        .collect();
    v.sort();
    v
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {v:?}"))
        .iter()
        .map(|x| x.as_str().unwrap().to_owned())
        .collect()
}

/// The offboarding function may do what the offboarding step does and nothing else: read
/// and write the main table without UpdateItem (it counts nothing), query the org's users on
/// `gsi1`, append audit events, and put its receipts and refusals on the
/// default bus, as `gatehouse`, of their two detail types only. It is fed by an SQS event
/// that reports failed items only; no other function may put events.
#[test]
fn the_offboarding_function_may_do_exactly_what_the_step_needs() {
    let t = template();
    assert_eq!(
        granted(&t, "OffboardingFunction"),
        pairs(&[
            ("audit", "dynamodb:PutItem"),
            ("bus", "events:PutEvents"),
            ("gsi1", "dynamodb:Query"),
            ("main", "dynamodb:BatchGetItem"),
            ("main", "dynamodb:ConditionCheckItem"),
            ("main", "dynamodb:DeleteItem"),
            ("main", "dynamodb:GetItem"),
            ("main", "dynamodb:PutItem"),
            ("main", "dynamodb:Query"),
        ])
    );
    for (function, st) in statements(&t) {
        let is_bus = actions(&st).iter().any(|a| a.starts_with("events:"));
        assert_eq!(
            is_bus,
            function == "OffboardingFunction" && st["Sid"] == "PutReceiptsOnTheDefaultBus",
            "{function}: {:?}",
            st["Sid"]
        );
        if !is_bus {
            continue;
        }
        assert_eq!(actions(&st), ["events:PutEvents"]);
        assert_eq!(
            st["Resource"],
            serde_yaml::from_str::<Value>(
                r#"[{"Fn::Sub": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}:event-bus/default"}]"#
            )
            .unwrap()
        );
        let cond = &st["Condition"]["StringEquals"];
        assert_eq!(
            strings(&cond["events:source"]),
            [gatehouse::offboarding::SOURCE]
        );
        assert_eq!(
            strings(&cond["events:detail-type"]),
            [
                gatehouse::offboarding::OFFBOARDED,
                gatehouse::offboarding::OFFBOARD_FAILED
            ]
        );
        // The rule's events are not the function's own: it cannot feed itself.
        assert_ne!(
            gatehouse::offboarding::DETAIL_TYPE,
            gatehouse::offboarding::OFFBOARDED
        );
    }
    let f = &t["Resources"]["OffboardingFunction"]["Properties"];
    let events = f["Events"].as_mapping().unwrap();
    assert_eq!(events.len(), 1);
    let (_, sqs) = events.iter().next().unwrap();
    assert_eq!(sqs["Type"], "SQS");
    assert_eq!(
        sqs["Properties"]["Queue"]["Fn::GetAtt"],
        serde_yaml::from_str::<Value>("[OffboardingQueue, Arn]").unwrap()
    );
    assert_eq!(
        strings(&sqs["Properties"]["FunctionResponseTypes"]),
        ["ReportBatchItemFailures"]
    );
    let batch = sqs["Properties"]["BatchSize"].as_u64().unwrap();
    assert!((1..=10).contains(&batch), "BatchSize {batch}");
    // A message is visible again only after the function's timeout has passed.
    let timeout = f["Timeout"].as_u64().unwrap();
    let visibility = t["Resources"]["OffboardingQueue"]["Properties"]["VisibilityTimeout"]
        .as_u64()
        .unwrap();
    assert!(visibility >= 6 * timeout, "{visibility} < 6 x {timeout}");
}

/// The rule sends the default bus's `gatehouse.offboard` events of the configured source to
/// the queue; only that rule may send to it (events.amazonaws.com with the rule's ARN as
/// `aws:SourceArn`); both queues are encrypted, and a message received five times goes to
/// the dead-letter queue. The outputs give the queue's URL and the rule's ARN.
#[test]
fn the_offboarding_rule_feeds_a_queue_only_it_may_send_to() {
    let t = template();
    let r = &t["Resources"];
    let get_att = |id: &str| serde_yaml::from_str::<Value>(&format!("[{id}, Arn]")).unwrap();
    let param = &t["Parameters"]["OffboardingSource"];
    assert_eq!(param["Type"], "String");
    assert!(param["Default"].as_str().is_some_and(|s| !s.is_empty()));

    let rule = &r["OffboardingRule"];
    assert_eq!(rule["Type"], "AWS::Events::Rule");
    let p = &rule["Properties"];
    assert_eq!(p["EventBusName"], "default");
    assert_eq!(p["State"], "ENABLED");
    let pattern = p["EventPattern"].as_mapping().unwrap();
    assert_eq!(pattern.len(), 2, "source and detail-type only");
    assert_eq!(p["EventPattern"]["source"][0]["Ref"], "OffboardingSource");
    assert_eq!(
        strings(&p["EventPattern"]["detail-type"]),
        [gatehouse::offboarding::DETAIL_TYPE]
    );
    let targets = p["Targets"].as_sequence().unwrap();
    assert_eq!(targets.len(), 1);
    assert_eq!(targets[0]["Arn"]["Fn::GetAtt"], get_att("OffboardingQueue"));

    let queue = &r["OffboardingQueue"];
    assert_eq!(queue["Type"], "AWS::SQS::Queue");
    let redrive = &queue["Properties"]["RedrivePolicy"];
    assert_eq!(
        redrive["deadLetterTargetArn"]["Fn::GetAtt"],
        get_att("OffboardingDeadLetterQueue")
    );
    assert_eq!(redrive["maxReceiveCount"], 5);
    for q in ["OffboardingQueue", "OffboardingDeadLetterQueue"] {
        assert_eq!(r[q]["Type"], "AWS::SQS::Queue", "{q}");
        assert_eq!(r[q]["Properties"]["SqsManagedSseEnabled"], true, "{q}");
    }
    assert!(
        r["OffboardingDeadLetterQueue"]["Properties"]
            .get("RedrivePolicy")
            .is_none()
    );

    let policy = &r["OffboardingQueuePolicy"];
    assert_eq!(policy["Type"], "AWS::SQS::QueuePolicy");
    let queues = policy["Properties"]["Queues"].as_sequence().unwrap();
    assert_eq!(queues.len(), 1);
    assert_eq!(queues[0]["Ref"], "OffboardingQueue");
    let sts = policy["Properties"]["PolicyDocument"]["Statement"]
        .as_sequence()
        .unwrap();
    assert_eq!(sts.len(), 1, "one statement: the rule's");
    let st = &sts[0];
    assert_eq!(st["Effect"], "Allow");
    assert_eq!(st["Principal"]["Service"], "events.amazonaws.com");
    assert_eq!(st["Action"], "sqs:SendMessage");
    assert_eq!(st["Resource"]["Fn::GetAtt"], get_att("OffboardingQueue"));
    let condition = st["Condition"].as_mapping().unwrap();
    assert_eq!(condition.len(), 1);
    assert_eq!(
        st["Condition"]["ArnEquals"]["aws:SourceArn"]["Fn::GetAtt"],
        get_att("OffboardingRule")
    );

    let out = &t["Outputs"];
    assert_eq!(
        out["OffboardingQueueUrl"]["Value"]["Ref"],
        "OffboardingQueue"
    );
    assert_eq!(
        out["OffboardingRuleArn"]["Value"]["Fn::GetAtt"],
        get_att("OffboardingRule")
    );
}

/// The allowlist function may do what its flows need and nothing else: read and write the
/// main table (the list, and the step-up's budgets and codes), query the org's users on
/// `gsi1` (the owners' notices), append audit events and query the audit table itself (the
/// dry run, over the org's shards; no index), read the data keys (step-ups with a code), and mail.
#[test]
fn the_allowlist_function_may_do_exactly_what_its_flows_need() {
    let mut t = template();
    // Mail is checked on its own (`only_functions_that_mail_…`).
    let policy = &mut t["Resources"]["AllowlistFunction"]["Properties"]["Policies"][0]["Statement"];
    policy
        .as_sequence_mut()
        .unwrap()
        .retain(|st| !actions(st).iter().any(|a| a.starts_with("ses:")));
    assert_eq!(
        granted(&t, "AllowlistFunction"),
        pairs(&[
            ("audit", "dynamodb:PutItem"),
            ("audit", "dynamodb:Query"),
            ("data", "secretsmanager:GetSecretValue"),
            ("gsi1", "dynamodb:Query"),
            ("main", "dynamodb:BatchGetItem"),
            ("main", "dynamodb:ConditionCheckItem"),
            ("main", "dynamodb:DeleteItem"),
            ("main", "dynamodb:GetItem"),
            ("main", "dynamodb:PutItem"),
            ("main", "dynamodb:Query"),
            ("main", "dynamodb:UpdateItem"),
            ("main", "dynamodb:UpdateItem"),
        ])
    );
    let text =
        serde_json::to_string(&serde_json::to_value(&t["Resources"]["AllowlistFunction"]).unwrap())
            .unwrap();
    assert!(!text.contains("index/by_user") && !text.contains("index/by_actor"));
}

/// Key material by purpose (docs/keys.md): only the functions that sign read the signing
/// secret, only those that seal or hash read the data-key secret, every other function
/// reads neither (it verifies with the published keys), and each function is told exactly
/// the secrets it may read.
#[test]
fn each_function_reads_only_the_secrets_it_uses() {
    let t = template();
    let mut reads: Vec<(String, String)> = Vec::new();
    for (function, st) in statements(&t) {
        for secret in ["SigningKeysSecret", "DataKeysSecret"] {
            if mentions(&st["Resource"], secret) {
                for a in actions(&st) {
                    reads.push((function.clone(), format!("{secret} {a}")));
                }
            }
        }
    }
    reads.sort();
    let rotate = |a: &str| {
        (
            "KeyRotationFunction".to_owned(),
            format!("SigningKeysSecret {a}"),
        )
    };
    let mut expected: Vec<(String, String)> = vec![
        (
            "AuditFunction".into(),
            "DataKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        // A step-up with an MFA code opens the TOTP seed (or matches a recovery code) and
        // writes the factor back sealed: every family with a step-up.
        (
            "UsersFunction".into(),
            "DataKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        (
            "TokensFunction".into(),
            "DataKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        (
            "AllowlistFunction".into(),
            "DataKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        (
            "LoginFunction".into(),
            "SigningKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        (
            "MfaFunction".into(),
            "DataKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        (
            "MfaFunction".into(),
            "SigningKeysSecret secretsmanager:GetSecretValue".into(),
        ),
        rotate("secretsmanager:DescribeSecret"),
        rotate("secretsmanager:GetSecretValue"),
        rotate("secretsmanager:PutSecretValue"),
        rotate("secretsmanager:UpdateSecretVersionStage"),
    ];
    expected.sort();
    assert_eq!(reads, expected);
    let globals = &t["Globals"]["Function"]["Environment"]["Variables"];
    assert_eq!(globals["GATEHOUSE_KEYS"], "aws");
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let name = name.as_str().unwrap();
        let env = &res["Properties"]["Environment"]["Variables"];
        for (var, secret) in [
            ("GATEHOUSE_SIGNING_KEYS_SECRET_ARN", "SigningKeysSecret"),
            ("GATEHOUSE_DATA_KEYS_SECRET_ARN", "DataKeysSecret"),
        ] {
            let told = env.get(var).is_some();
            let may = reads
                .iter()
                .any(|(f, r)| f == name && r == &format!("{secret} secretsmanager:GetSecretValue"));
            let rotates = name == "KeyRotationFunction";
            assert_eq!(told, may && !rotates, "{name}: {var}");
        }
    }
}

/// The rotation function may rotate the signing secret and write the published keys, and
/// nothing else; Secrets Manager invokes it on the schedule, for that secret only.
#[test]
fn the_key_rotation_function_may_rotate_and_publish_only() {
    let t = template();
    for (function, st) in statements(&t) {
        if function != "KeyRotationFunction" {
            continue;
        }
        if actions(&st).iter().any(|a| a.starts_with("dynamodb:")) {
            let mut acts = actions(&st);
            acts.sort();
            assert_eq!(acts, ["dynamodb:GetItem", "dynamodb:PutItem"]);
            assert!(mentions(&st["Resource"], "MainTable"));
            assert_eq!(
                strings(&st["Condition"]["ForAllValues:StringEquals"]["dynamodb:LeadingKeys"]),
                ["KEYS"]
            );
        } else {
            assert!(mentions(&st["Resource"], "SigningKeysSecret"));
        }
    }
    let schedule = &t["Resources"]["SigningKeysRotation"]["Properties"];
    assert!(mentions(&schedule["SecretId"], "SigningKeysSecret"));
    assert!(mentions(
        &schedule["RotationLambdaARN"],
        "KeyRotationFunction"
    ));
    assert_eq!(
        schedule["RotationRules"]["ScheduleExpression"]["Fn::Sub"],
        "rate(${SigningKeyRotationDays} days)"
    );
    assert_eq!(t["Parameters"]["SigningKeyRotationDays"]["Default"], 30);
    let permission = &t["Resources"]["KeyRotationPermission"]["Properties"];
    assert_eq!(permission["Principal"], "secretsmanager.amazonaws.com");
    assert!(mentions(&permission["SourceArn"], "SigningKeysSecret"));
    let generated = &t["Resources"]["SigningKeysSecret"]["Properties"]["GenerateSecretString"];
    assert_eq!(generated["GenerateStringKey"], "initial_seed");
    assert_eq!(
        t["Resources"]["DataKeysSecret"]["DeletionPolicy"], "Retain",
        "TOTP seeds are sealed under it"
    );
}

/// Only `key-rotation` may write the published keys: every other function's policy denies
/// every write whose partition is `KEYS`, so no Allow of theirs (an unconditioned PutItem on
/// the main table, the authorizer's marker) can be turned into publishing a key, which would
/// let that function mint access tokens every verifier accepts.
#[test]
fn only_key_rotation_may_write_the_published_keys() {
    let t = template();
    for (name, res) in t["Resources"].as_mapping().unwrap() {
        if res["Type"] != "AWS::Serverless::Function" {
            continue;
        }
        let name = name.as_str().unwrap();
        let denies: Vec<&Value> = res["Properties"]["Policies"]
            .as_sequence()
            .into_iter()
            .flatten()
            .flat_map(|p| p["Statement"].as_sequence().into_iter().flatten())
            .filter(|st| st["Effect"] == "Deny")
            .collect();
        if name == "KeyRotationFunction" {
            assert!(denies.is_empty(), "{name}");
            continue;
        }
        assert_eq!(denies.len(), 1, "{name}");
        let st = denies[0];
        let mut acts = actions(st);
        acts.sort();
        assert_eq!(
            acts,
            [
                "dynamodb:BatchWriteItem",
                "dynamodb:DeleteItem",
                "dynamodb:PutItem",
                "dynamodb:UpdateItem"
            ],
            "{name}"
        );
        assert!(mentions(&st["Resource"], "MainTable"), "{name}");
        assert_eq!(
            strings(&st["Condition"]["ForAnyValue:StringEquals"]["dynamodb:LeadingKeys"]),
            ["KEYS"],
            "{name}"
        );
    }
    // And the item is where the code puts it.
    let key = gatehouse::store::keys::published_keys();
    assert_eq!(key.pk, "KEYS");
}

/// The functions that read a secret read its current version only.
#[test]
fn secrets_are_read_at_their_current_version_only() {
    let t = template();
    for (function, st) in statements(&t) {
        if actions(&st).contains(&"secretsmanager:GetSecretValue".to_owned())
            && function != "KeyRotationFunction"
        {
            assert_eq!(
                st["Condition"]["StringEquals"]["secretsmanager:VersionStage"], "AWSCURRENT",
                "{function}"
            );
        }
    }
}

/// Each function has its own `MemorySize`, chosen from `make bench-functions`' figures, and
/// docs/performance.md ("Memory per function") lists the same size for each.
#[test]
fn every_function_sizes_its_memory_as_the_docs_say() {
    let t = template();
    assert!(
        t["Globals"]["Function"]["MemorySize"].is_null(),
        "no size for all: each function's own"
    );
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/performance.md"
    ))
    .unwrap();
    for (resource, binary) in functions() {
        let size = t["Resources"][resource]["Properties"]["MemorySize"]
            .as_u64()
            .unwrap_or_else(|| panic!("{resource} has no MemorySize"));
        assert!((128..=10_240).contains(&size), "{resource}: {size}");
        let row = format!("| `{binary}` | {size} MB |");
        assert!(
            doc.lines().any(|l| l.starts_with(&row)),
            "docs/performance.md has no row starting {row}"
        );
    }
}
