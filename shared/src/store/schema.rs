//! The key schema of both tables: the one source for table creation here, in the local server
//! and in the conformance tests. A test checks that `infra/template.yaml` declares the same.

use super::{Index, Table};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableSchema {
    /// The logical id of the table in `infra/template.yaml`.
    pub logical_id: &'static str,
    pub hash_key: &'static str,
    pub range_key: &'static str,
    pub indexes: Vec<IndexSchema>,
    pub ttl_attribute: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSchema {
    pub name: &'static str,
    pub hash_key: &'static str,
    pub range_key: &'static str,
}

impl TableSchema {
    /// Every attribute used as a key of the table or an index; all are strings.
    pub fn key_attributes(&self) -> Vec<&'static str> {
        let mut attrs = vec![self.hash_key, self.range_key];
        for i in &self.indexes {
            for a in [i.hash_key, i.range_key] {
                if !attrs.contains(&a) {
                    attrs.push(a);
                }
            }
        }
        attrs
    }
}

fn index(i: Index) -> IndexSchema {
    let (hash_key, range_key) = i.keys();
    IndexSchema {
        name: i.name(),
        hash_key,
        range_key,
    }
}

pub fn table_schema(table: Table) -> TableSchema {
    match table {
        Table::Main => TableSchema {
            logical_id: "MainTable",
            hash_key: super::PK,
            range_key: super::SK,
            indexes: vec![index(Index::Gsi1)],
            ttl_attribute: super::TTL,
        },
        Table::Audit => TableSchema {
            logical_id: "AuditTable",
            hash_key: super::PK,
            range_key: super::SK,
            indexes: vec![index(Index::AuditByUser), index(Index::AuditByActor)],
            ttl_attribute: super::TTL,
        },
    }
}
