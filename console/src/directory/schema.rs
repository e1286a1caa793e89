//! The HSDS 3.0 tables the directory keeps, described once as data: their columns, which are
//! required, how each is checked and which table a foreign key points at. The importer, the
//! exporter, the database store and the JSON of `GET /api/services/{id}` are all driven by this
//! one description, so a column added here is imported, stored, exported and served everywhere.

/// How a column's text is checked and stored.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Kind {
    /// The row's identifier: non-empty, unique in its table.
    Id,
    /// Free text.
    Text,
    /// A decimal number within bounds (latitude, longitude).
    Float { min: f64, max: f64 },
    /// A whole number (ages, RRULE interval).
    Int,
    /// A local time `HH:MM` (or `HH:MM:SS`).
    Time,
    /// A date `YYYY-MM-DD`.
    Date,
    /// The id of a row of another table.
    Ref(&'static str),
    /// One of a fixed list of values.
    Enum(&'static [&'static str]),
    /// RRULE BYDAY: comma-separated `MO,TU,WE,TH,FR,SA,SU`.
    ByDay,
    /// An IANA time zone name (`Europe/Rome`).
    TimeZone,
}

/// One column of a table.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub kind: Kind,
    pub required: bool,
}

/// One table.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub columns: &'static [Column],
}

impl Table {
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c.name == name)
    }
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, required: false }
}

const fn req(name: &'static str, kind: Kind) -> Column {
    Column { name, kind, required: true }
}

const ID: Column = req("id", Kind::Id);
const T: Kind = Kind::Text;

pub const ORGANIZATION: Table = Table {
    name: "organization",
    columns: &[
        ID,
        req("name", T),
        col("alternate_name", T),
        col("description", T),
        col("email", T),
        col("website", T),
        col("legal_status", T),
        col("uri", T),
        col("parent_organization_id", Kind::Ref("organization")),
    ],
};

pub const SERVICE: Table = Table {
    name: "service",
    columns: &[
        ID,
        req("organization_id", Kind::Ref("organization")),
        req("name", T),
        col("alternate_name", T),
        col("description", T),
        col("url", T),
        col("email", T),
        req("status", Kind::Enum(&["active", "inactive", "defunct", "temporarily closed"])),
        col("interpretation_services", T),
        col("application_process", T),
        col("fees_description", T),
        col("eligibility_description", T),
        col("minimum_age", Kind::Int),
        col("maximum_age", Kind::Int),
        col("alert", T),
        // Kept by the server on every change (an import takes the file's): when the record last
        // changed (RFC 3339) and when someone last confirmed it right.
        col("last_modified", T),
        col("assured_date", Kind::Date),
    ],
};

pub const LOCATION: Table = Table {
    name: "location",
    columns: &[
        ID,
        req("location_type", Kind::Enum(&["physical", "postal", "virtual"])),
        col("organization_id", Kind::Ref("organization")),
        col("name", T),
        col("description", T),
        col("transportation", T),
        col("latitude", Kind::Float { min: -90.0, max: 90.0 }),
        col("longitude", Kind::Float { min: -180.0, max: 180.0 }),
    ],
};

pub const SERVICE_AT_LOCATION: Table = Table {
    name: "service_at_location",
    columns: &[
        ID,
        req("service_id", Kind::Ref("service")),
        req("location_id", Kind::Ref("location")),
        col("description", T),
    ],
};

pub const ADDRESS: Table = Table {
    name: "address",
    columns: &[
        ID,
        req("location_id", Kind::Ref("location")),
        col("attention", T),
        req("address_1", T),
        col("address_2", T),
        req("city", T),
        col("region", T),
        req("state_province", T),
        req("postal_code", T),
        req("country", T),
        req("address_type", Kind::Enum(&["physical", "postal", "virtual"])),
    ],
};

pub const PHONE: Table = Table {
    name: "phone",
    columns: &[
        ID,
        col("location_id", Kind::Ref("location")),
        col("service_id", Kind::Ref("service")),
        col("organization_id", Kind::Ref("organization")),
        col("service_at_location_id", Kind::Ref("service_at_location")),
        req("number", T),
        col("extension", T),
        col("type", Kind::Enum(&["text", "sms", "fax", "voice", "cell", "video", "pager", "textphone"])),
        col("description", T),
    ],
};

pub const SCHEDULE: Table = Table {
    name: "schedule",
    columns: &[
        ID,
        col("service_id", Kind::Ref("service")),
        col("location_id", Kind::Ref("location")),
        col("service_at_location_id", Kind::Ref("service_at_location")),
        col("valid_from", Kind::Date),
        col("valid_to", Kind::Date),
        col("timezone", Kind::TimeZone),
        col("freq", Kind::Enum(&["WEEKLY", "MONTHLY"])),
        col("interval", Kind::Int),
        col("byday", Kind::ByDay),
        col("opens_at", Kind::Time),
        col("closes_at", Kind::Time),
        col("description", T),
        col("notes", T),
    ],
};

pub const LANGUAGE: Table = Table {
    name: "language",
    columns: &[
        ID,
        col("service_id", Kind::Ref("service")),
        col("location_id", Kind::Ref("location")),
        col("phone_id", Kind::Ref("phone")),
        col("name", T),
        req("code", T),
        col("note", T),
    ],
};

pub const TAXONOMY: Table =
    Table { name: "taxonomy", columns: &[ID, req("name", T), req("description", T), col("uri", T), col("version", T)] };

pub const TAXONOMY_TERM: Table = Table {
    name: "taxonomy_term",
    columns: &[
        ID,
        req("code", T),
        req("name", T),
        req("description", T),
        col("parent_id", Kind::Ref("taxonomy_term")),
        col("taxonomy_id", Kind::Ref("taxonomy")),
        col("language", T),
        col("term_uri", T),
    ],
};

pub const ATTRIBUTE: Table = Table {
    name: "attribute",
    columns: &[
        ID,
        req("link_id", T),
        req("taxonomy_term_id", Kind::Ref("taxonomy_term")),
        col("link_type", T),
        req("link_entity", Kind::Enum(&["service", "organization", "location", "service_at_location"])),
        col("value", T),
        col("label", T),
    ],
};

/// Every table, parents before children (the order of inserts; deletes run in reverse).
pub const TABLES: &[Table] = &[
    ORGANIZATION,
    SERVICE,
    LOCATION,
    SERVICE_AT_LOCATION,
    ADDRESS,
    PHONE,
    SCHEDULE,
    LANGUAGE,
    TAXONOMY,
    TAXONOMY_TERM,
    ATTRIBUTE,
];

pub fn table(name: &str) -> Option<&'static Table> {
    TABLES.iter().find(|t| t.name == name)
}

/// The id of the taxonomy holding the helpline's six service areas.
pub const AREA_TAXONOMY_ID: &str = "helpline-areas";

/// The taxonomy term id of a service area (`area-lavoro`).
pub fn area_term_id(area: ivr::domain::ServiceArea) -> String {
    format!("area-{}", area.as_str())
}
