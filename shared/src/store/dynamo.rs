//! `DynamoStore`: the [`Backend`] on Amazon DynamoDB through aws-sdk-dynamodb.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, KeysAndAttributes, Projection, ProjectionType, Put,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem, Update,
};

use super::schema::table_schema;
use super::{
    AttributeValue, Backend, Cond, Item, Key, Page, Query, SkRange, StoreError, Table, Write,
};

#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    main_table: String,
    audit_table: String,
}

impl DynamoStore {
    pub fn new(
        client: Client,
        main_table: impl Into<String>,
        audit_table: impl Into<String>,
    ) -> Self {
        Self {
            client,
            main_table: main_table.into(),
            audit_table: audit_table.into(),
        }
    }

    pub fn table_name(&self, t: Table) -> &str {
        match t {
            Table::Main => &self.main_table,
            Table::Audit => &self.audit_table,
        }
    }

    /// Creates both tables with the schema of [`table_schema`] where they do not exist yet,
    /// for the local server and tests (`infra/template.yaml` creates them in AWS).
    pub async fn create_tables_if_missing(&self) -> Result<(), StoreError> {
        for t in [Table::Main, Table::Audit] {
            let name = self.table_name(t).to_owned();
            match self.client.describe_table().table_name(&name).send().await {
                Ok(_) => continue,
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_not_found_exception()) => {}
                Err(e) => return Err(unavailable("DescribeTable", &e)),
            }
            let schema = table_schema(t);
            let key = |name: &str, kt: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(kt)
                    .build()
            };
            let mut create = self
                .client
                .create_table()
                .table_name(&name)
                .billing_mode(BillingMode::PayPerRequest);
            for a in schema.key_attributes() {
                create = create.attribute_definitions(
                    AttributeDefinition::builder()
                        .attribute_name(a)
                        .attribute_type(ScalarAttributeType::S)
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                );
            }
            create = create
                .key_schema(
                    key(schema.hash_key, KeyType::Hash)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                )
                .key_schema(
                    key(schema.range_key, KeyType::Range)
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                );
            for i in &schema.indexes {
                create = create.global_secondary_indexes(
                    GlobalSecondaryIndex::builder()
                        .index_name(i.name)
                        .key_schema(
                            key(i.hash_key, KeyType::Hash)
                                .map_err(|e| StoreError::Invalid(e.to_string()))?,
                        )
                        .key_schema(
                            key(i.range_key, KeyType::Range)
                                .map_err(|e| StoreError::Invalid(e.to_string()))?,
                        )
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?,
                );
            }
            match create.send().await {
                Ok(_) => {}
                // Another process created it between our describe and create.
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|s| s.is_resource_in_use_exception()) =>
                {
                    continue;
                }
                Err(e) => return Err(unavailable("CreateTable", &e)),
            }
            let ttl = TimeToLiveSpecification::builder()
                .attribute_name(schema.ttl_attribute)
                .enabled(true)
                .build()
                .map_err(|e| StoreError::Invalid(e.to_string()))?;
            self.client
                .update_time_to_live()
                .table_name(&name)
                .time_to_live_specification(ttl)
                .send()
                .await
                .map_err(|e| unavailable("UpdateTimeToLive", &e))?;
        }
        Ok(())
    }

    fn key_item(key: &Key) -> HashMap<String, AttributeValue> {
        HashMap::from([
            (super::PK.to_owned(), AttributeValue::S(key.pk.clone())),
            (super::SK.to_owned(), AttributeValue::S(key.sk.clone())),
        ])
    }
}

/// Requests a `BatchGetItem` may take, for the keys DynamoDB left unprocessed.
const BATCH_GET_ATTEMPTS: u32 = 4;

fn unavailable<E, R>(op: &str, e: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    tracing::warn!(operation = op, error = %DisplayErrorContext(e), "DynamoDB request failed");
    StoreError::Unavailable(format!("{op}: {}", e.code().unwrap_or("request failed")))
}

fn ver_value(v: u64) -> HashMap<String, AttributeValue> {
    HashMap::from([(":ver".to_owned(), AttributeValue::N(v.to_string()))])
}

/// A condition as a DynamoDB condition expression with its names and values.
struct Expr {
    text: &'static str,
    names: HashMap<String, String>,
    values: Option<HashMap<String, AttributeValue>>,
}

fn expression(cond: &Cond) -> Option<Expr> {
    let pk = || HashMap::from([("#pk".to_owned(), super::PK.to_owned())]);
    let ver = |v: u64| {
        Some(HashMap::from([(
            ":ver".to_owned(),
            AttributeValue::N(v.to_string()),
        )]))
    };
    match cond {
        Cond::None => None,
        Cond::NotExists | Cond::VersionOrAbsent(None) => Some(Expr {
            text: "attribute_not_exists(#pk)",
            names: pk(),
            values: None,
        }),
        Cond::Exists => Some(Expr {
            text: "attribute_exists(#pk)",
            names: pk(),
            values: None,
        }),
        Cond::Version(v) => Some(Expr {
            text: "#ver = :ver",
            names: HashMap::from([("#ver".to_owned(), super::VERSION.to_owned())]),
            values: ver(*v),
        }),
        Cond::VersionOrAbsent(Some(v)) => Some(Expr {
            text: "attribute_not_exists(#pk) OR #ver = :ver",
            names: HashMap::from([
                ("#pk".to_owned(), super::PK.to_owned()),
                ("#ver".to_owned(), super::VERSION.to_owned()),
            ]),
            values: ver(*v),
        }),
        Cond::VersionAndNumber { ver, attr, value } => {
            let mut values =
                HashMap::from([(":a".to_owned(), AttributeValue::N(value.to_string()))]);
            values.extend(ver_value(*ver));
            Some(Expr {
                text: if *value == 0 {
                    "#ver = :ver AND (attribute_not_exists(#a) OR #a = :a)"
                } else {
                    "#ver = :ver AND #a = :a"
                },
                names: HashMap::from([
                    ("#ver".to_owned(), super::VERSION.to_owned()),
                    ("#a".to_owned(), (*attr).to_owned()),
                ]),
                values: Some(values),
            })
        }
        Cond::NumberIs { attr, value } => {
            let mut names = HashMap::from([("#a".to_owned(), (*attr).to_owned())]);
            // DynamoDB refuses names an expression does not use.
            let text = if *value == 0 {
                names.insert("#pk".to_owned(), super::PK.to_owned());
                "attribute_exists(#pk) AND (attribute_not_exists(#a) OR #a = :a)"
            } else {
                "#a = :a"
            };
            Some(Expr {
                text,
                names,
                values: Some(HashMap::from([(
                    ":a".to_owned(),
                    AttributeValue::N(value.to_string()),
                )])),
            })
        }
    }
}

#[async_trait]
impl Backend for DynamoStore {
    async fn get(&self, table: Table, key: &Key) -> Result<Option<Item>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(self.table_name(table))
            .set_key(Some(Self::key_item(key)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| unavailable("GetItem", &e))?;
        Ok(out.item)
    }

    async fn get_many(&self, table: Table, keys: &[Key]) -> Result<Vec<Option<Item>>, StoreError> {
        super::check_batch(keys)?;
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let name = self.table_name(table).to_owned();
        let mut found: HashMap<Key, Item> = HashMap::new();
        let mut pending: Vec<HashMap<String, AttributeValue>> =
            keys.iter().map(Self::key_item).collect();
        // DynamoDB may answer part of a batch and hand the rest back as unprocessed keys
        // (throttling, the 16 MB limit): ask again for those, a few times, with a pause.
        for attempt in 0..BATCH_GET_ATTEMPTS {
            if pending.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(10 << attempt)).await;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .consistent_read(true)
                .build()
                .map_err(|e| StoreError::Invalid(format!("BatchGetItem: {e}")))?;
            let out = self
                .client
                .batch_get_item()
                .request_items(&name, request)
                .send()
                .await
                .map_err(|e| unavailable("BatchGetItem", &e))?;
            for item in out
                .responses
                .and_then(|mut r| r.remove(&name))
                .unwrap_or_default()
            {
                if let (Some(pk), Some(sk)) = (
                    super::attr_str(&item, super::PK),
                    super::attr_str(&item, super::SK),
                ) {
                    found.insert(Key::new(pk, sk), item);
                }
            }
            pending = out
                .unprocessed_keys
                .and_then(|mut u| u.remove(&name))
                .map(|k| k.keys)
                .unwrap_or_default();
        }
        if !pending.is_empty() {
            return Err(StoreError::Unavailable(
                "BatchGetItem: keys left unprocessed".into(),
            ));
        }
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    async fn scan(
        &self,
        table: Table,
        sk_prefix: &str,
        start_after: Option<Item>,
    ) -> Result<Page, StoreError> {
        let out = self
            .client
            .scan()
            .table_name(self.table_name(table))
            .consistent_read(true)
            .filter_expression("begins_with(#s, :p)")
            .expression_attribute_names("#s", super::SK)
            .expression_attribute_values(":p", AttributeValue::S(sk_prefix.to_owned()))
            .set_exclusive_start_key(start_after)
            .send()
            .await
            .map_err(|e| unavailable("Scan", &e))?;
        Ok(Page {
            items: out.items.unwrap_or_default(),
            last_key: out.last_evaluated_key,
        })
    }

    async fn query(&self, q: &Query) -> Result<Page, StoreError> {
        let (hash_attr, range_attr) = q.index.map_or((super::PK, super::SK), super::Index::keys);
        let mut names = HashMap::from([("#h".to_owned(), hash_attr.to_owned())]);
        let mut values = HashMap::from([(":h".to_owned(), AttributeValue::S(q.pk.clone()))]);
        let key_expr = match &q.sk {
            SkRange::All => "#h = :h",
            SkRange::BeginsWith(p) => {
                names.insert("#r".into(), range_attr.into());
                values.insert(":a".into(), AttributeValue::S(p.clone()));
                "#h = :h AND begins_with(#r, :a)"
            }
            SkRange::Between(a, b) => {
                names.insert("#r".into(), range_attr.into());
                values.insert(":a".into(), AttributeValue::S(a.clone()));
                values.insert(":b".into(), AttributeValue::S(b.clone()));
                "#h = :h AND #r BETWEEN :a AND :b"
            }
        };
        let table = q.index.map_or(q.table, super::Index::table);
        let out = self
            .client
            .query()
            .table_name(self.table_name(table))
            .set_index_name(q.index.map(|i| i.name().to_owned()))
            // Indexes only offer eventually consistent reads.
            .consistent_read(q.index.is_none())
            .key_condition_expression(key_expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .scan_index_forward(!q.newest_first)
            .set_limit(q.limit.map(|l| i32::try_from(l).unwrap_or(i32::MAX)))
            .set_exclusive_start_key(q.start_after.clone())
            .send()
            .await
            .map_err(|e| unavailable("Query", &e))?;
        Ok(Page {
            items: out.items.unwrap_or_default(),
            last_key: out.last_evaluated_key,
        })
    }

    async fn transact(&self, writes: &[Write]) -> Result<(), StoreError> {
        // One write alone needs no transaction: PutItem and DeleteItem apply the same condition
        // at half the write cost.
        if let [
            single @ (Write::Put { .. }
            | Write::Delete { .. }
            | Write::Count { .. }
            | Write::Set { .. }),
        ] = writes
        {
            return self.write_one(single).await;
        }
        let mut items = Vec::with_capacity(writes.len());
        for w in writes {
            let built = match w {
                Write::Put { table, item, cond } => {
                    let e = expression(cond);
                    let put = Put::builder()
                        .table_name(self.table_name(*table))
                        .set_item(Some(item.clone()))
                        .set_condition_expression(e.as_ref().map(|e| e.text.to_owned()))
                        .set_expression_attribute_names(e.as_ref().map(|e| e.names.clone()))
                        .set_expression_attribute_values(e.and_then(|e| e.values))
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    TransactWriteItem::builder().put(put).build()
                }
                Write::Delete { table, key, cond } => {
                    let e = expression(cond);
                    let del = Delete::builder()
                        .table_name(self.table_name(*table))
                        .set_key(Some(Self::key_item(key)))
                        .set_condition_expression(e.as_ref().map(|e| e.text.to_owned()))
                        .set_expression_attribute_names(e.as_ref().map(|e| e.names.clone()))
                        .set_expression_attribute_values(e.and_then(|e| e.values))
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    TransactWriteItem::builder().delete(del).build()
                }
                Write::Check { table, key, cond } => {
                    let e = expression(cond).ok_or_else(|| {
                        StoreError::Invalid("a condition check needs a condition".into())
                    })?;
                    let check = ConditionCheck::builder()
                        .table_name(self.table_name(*table))
                        .set_key(Some(Self::key_item(key)))
                        .condition_expression(e.text)
                        .set_expression_attribute_names(Some(e.names))
                        .set_expression_attribute_values(e.values)
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    TransactWriteItem::builder().condition_check(check).build()
                }
                Write::Count {
                    table,
                    key,
                    counter,
                    first,
                    last,
                    at,
                    ttl,
                    cond,
                } => {
                    let c = count_expression(counter, first, last, at, *ttl, cond);
                    let update = Update::builder()
                        .table_name(self.table_name(*table))
                        .set_key(Some(Self::key_item(key)))
                        .update_expression(COUNT_UPDATE)
                        .set_condition_expression(c.condition)
                        .set_expression_attribute_names(Some(c.names))
                        .set_expression_attribute_values(Some(c.values))
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    TransactWriteItem::builder().update(update).build()
                }
                Write::Set {
                    table,
                    key,
                    attrs,
                    cond,
                } => {
                    let (text, c) = set_expression(attrs, cond);
                    let update = Update::builder()
                        .table_name(self.table_name(*table))
                        .set_key(Some(Self::key_item(key)))
                        .update_expression(text)
                        .set_condition_expression(c.condition)
                        .set_expression_attribute_names(Some(c.names))
                        .set_expression_attribute_values(Some(c.values))
                        .build()
                        .map_err(|e| StoreError::Invalid(e.to_string()))?;
                    TransactWriteItem::builder().update(update).build()
                }
            };
            items.push(built);
        }
        match self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                if let Some(TransactWriteItemsError::TransactionCanceledException(c)) =
                    e.as_service_error()
                {
                    let codes: Vec<Option<&str>> =
                        c.cancellation_reasons().iter().map(|r| r.code()).collect();
                    if let Some(err) = cancelled(&codes) {
                        return Err(err);
                    }
                }
                if e.code() == Some("TransactionConflictException") {
                    return Err(StoreError::Conflict);
                }
                if e.code() == Some("ValidationException") {
                    tracing::error!(error = %DisplayErrorContext(&e), "DynamoDB refused a transaction");
                    return Err(StoreError::Invalid("ValidationException".into()));
                }
                Err(unavailable("TransactWriteItems", &e))
            }
        }
    }
}

impl DynamoStore {
    /// A single conditional PutItem or DeleteItem.
    async fn write_one(&self, w: &Write) -> Result<(), StoreError> {
        match w {
            Write::Put { table, item, cond } => {
                let e = expression(cond);
                self.client
                    .put_item()
                    .table_name(self.table_name(*table))
                    .set_item(Some(item.clone()))
                    .set_condition_expression(e.as_ref().map(|e| e.text.to_owned()))
                    .set_expression_attribute_names(e.as_ref().map(|e| e.names.clone()))
                    .set_expression_attribute_values(e.and_then(|e| e.values))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| single_write_error("PutItem", &e))
            }
            Write::Delete { table, key, cond } => {
                let e = expression(cond);
                self.client
                    .delete_item()
                    .table_name(self.table_name(*table))
                    .set_key(Some(Self::key_item(key)))
                    .set_condition_expression(e.as_ref().map(|e| e.text.to_owned()))
                    .set_expression_attribute_names(e.as_ref().map(|e| e.names.clone()))
                    .set_expression_attribute_values(e.and_then(|e| e.values))
                    .send()
                    .await
                    .map(|_| ())
                    .map_err(|e| single_write_error("DeleteItem", &e))
            }
            Write::Count {
                table,
                key,
                counter,
                first,
                last,
                at,
                ttl,
                cond,
            } => {
                let c = count_expression(counter, first, last, at, *ttl, cond);
                self.update_one(*table, key, COUNT_UPDATE.to_owned(), c)
                    .await
            }
            Write::Set {
                table,
                key,
                attrs,
                cond,
            } => {
                let (text, c) = set_expression(attrs, cond);
                self.update_one(*table, key, text, c).await
            }
            Write::Check { .. } => Err(StoreError::Invalid(
                "a condition check alone writes nothing".into(),
            )),
        }
    }

    /// A single conditional UpdateItem (`Write::Count`, `Write::Set`).
    async fn update_one(
        &self,
        table: Table,
        key: &Key,
        update: String,
        c: CountExpr,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(self.table_name(table))
            .set_key(Some(Self::key_item(key)))
            .update_expression(update)
            .set_condition_expression(c.condition)
            .set_expression_attribute_names(Some(c.names))
            .set_expression_attribute_values(Some(c.values))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| single_write_error("UpdateItem", &e))
    }
}

/// The update expression of [`Write::Count`].
const COUNT_UPDATE: &str = "SET #c = if_not_exists(#c, :zero) + :one, \
                            #f = if_not_exists(#f, :at), #l = :at, #t = :ttl";

struct CountExpr {
    condition: Option<String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

fn count_expression(
    counter: &str,
    first: &str,
    last: &str,
    at: &AttributeValue,
    ttl: i64,
    cond: &Cond,
) -> CountExpr {
    let mut names = HashMap::from([
        ("#c".to_owned(), counter.to_owned()),
        ("#f".to_owned(), first.to_owned()),
        ("#l".to_owned(), last.to_owned()),
        ("#t".to_owned(), super::TTL.to_owned()),
    ]);
    let mut values = HashMap::from([
        (":zero".to_owned(), AttributeValue::N("0".into())),
        (":one".to_owned(), AttributeValue::N("1".into())),
        (":at".to_owned(), at.clone()),
        (":ttl".to_owned(), AttributeValue::N(ttl.to_string())),
    ]);
    let condition = expression(cond).map(|e| {
        names.extend(e.names);
        values.extend(e.values.unwrap_or_default());
        e.text.to_owned()
    });
    CountExpr {
        condition,
        names,
        values,
    }
}

/// The update expression and its names and values of [`Write::Set`]: `SET #s0 = :s0, …`.
fn set_expression(attrs: &[(&'static str, AttributeValue)], cond: &Cond) -> (String, CountExpr) {
    let mut names = HashMap::new();
    let mut values = HashMap::new();
    let mut sets = Vec::with_capacity(attrs.len());
    for (i, (name, value)) in attrs.iter().enumerate() {
        names.insert(format!("#s{i}"), (*name).to_owned());
        values.insert(format!(":s{i}"), value.clone());
        sets.push(format!("#s{i} = :s{i}"));
    }
    let condition = expression(cond).map(|e| {
        names.extend(e.names);
        values.extend(e.values.unwrap_or_default());
        e.text.to_owned()
    });
    (
        format!("SET {}", sets.join(", ")),
        CountExpr {
            condition,
            names,
            values,
        },
    )
}

/// The error of a single PutItem, DeleteItem or UpdateItem, in the terms of a one-write
/// transaction.
fn single_write_error<E, R>(op: &str, e: &SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + 'static,
    R: std::fmt::Debug,
{
    match e.code() {
        Some("ConditionalCheckFailedException") => StoreError::ConditionFailed { index: 0 },
        Some("TransactionConflictException") => StoreError::Conflict,
        Some("ValidationException") => {
            tracing::error!(operation = op, error = %DisplayErrorContext(e), "DynamoDB refused a write");
            StoreError::Invalid("ValidationException".into())
        }
        _ => unavailable(op, e),
    }
}

/// What a cancelled transaction means, from its cancellation reason codes (one per write, in
/// order). A false condition anywhere is a lost condition, named by its index; only when no
/// condition was false, a `TransactionConflict` is a conflict to retry. `None` for reasons
/// that are neither (throttling, validation): the caller reports the error as it is.
pub(crate) fn cancelled(codes: &[Option<&str>]) -> Option<StoreError> {
    if let Some(index) = codes
        .iter()
        .position(|c| *c == Some("ConditionalCheckFailed"))
    {
        return Some(StoreError::ConditionFailed { index });
    }
    codes
        .contains(&Some("TransactionConflict"))
        .then_some(StoreError::Conflict)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_false_condition_is_a_lost_condition() {
        assert!(matches!(
            cancelled(&[Some("None"), Some("ConditionalCheckFailed")]),
            Some(StoreError::ConditionFailed { index: 1 })
        ));
        assert!(matches!(
            cancelled(&[Some("TransactionConflict"), Some("None")]),
            Some(StoreError::Conflict)
        ));
        // A false condition wins over a conflict elsewhere: the condition is what decides.
        assert!(matches!(
            cancelled(&[
                Some("TransactionConflict"),
                Some("None"),
                Some("ConditionalCheckFailed")
            ]),
            Some(StoreError::ConditionFailed { index: 2 })
        ));
        assert!(cancelled(&[Some("None"), Some("ThrottlingError")]).is_none());
    }
}
