-- The services directory (issue 5): Open Referral HSDS 3.0 tables, prefixed dir_. Ids are
-- TEXT (HSDS uses UUID strings). attribute.link_id points at the table named by link_entity
-- and self-references (parent organization, parent term) are checked by the importer, so they
-- carry no FOREIGN KEY. dir_meta.version is bumped by every write, so every server's index
-- notices a change made elsewhere (the CLI, another node).

CREATE TABLE dir_organization (
    id TEXT PRIMARY KEY,
    "name" TEXT NOT NULL,
    alternate_name TEXT,
    description TEXT,
    email TEXT,
    website TEXT,
    legal_status TEXT,
    uri TEXT,
    parent_organization_id TEXT
);
CREATE INDEX dir_organization_parent_organization_id ON dir_organization(parent_organization_id);

CREATE TABLE dir_service (
    id TEXT PRIMARY KEY,
    organization_id TEXT NOT NULL REFERENCES dir_organization(id),
    "name" TEXT NOT NULL,
    alternate_name TEXT,
    description TEXT,
    url TEXT,
    email TEXT,
    status TEXT NOT NULL,
    interpretation_services TEXT,
    application_process TEXT,
    fees_description TEXT,
    eligibility_description TEXT,
    minimum_age INTEGER,
    maximum_age INTEGER,
    alert TEXT
);
CREATE INDEX dir_service_organization_id ON dir_service(organization_id);

CREATE TABLE dir_location (
    id TEXT PRIMARY KEY,
    location_type TEXT NOT NULL,
    organization_id TEXT REFERENCES dir_organization(id),
    "name" TEXT,
    description TEXT,
    transportation TEXT,
    latitude REAL,
    longitude REAL
);
CREATE INDEX dir_location_organization_id ON dir_location(organization_id);

CREATE TABLE dir_service_at_location (
    id TEXT PRIMARY KEY,
    service_id TEXT NOT NULL REFERENCES dir_service(id),
    location_id TEXT NOT NULL REFERENCES dir_location(id),
    description TEXT
);
CREATE INDEX dir_service_at_location_service_id ON dir_service_at_location(service_id);
CREATE INDEX dir_service_at_location_location_id ON dir_service_at_location(location_id);

CREATE TABLE dir_address (
    id TEXT PRIMARY KEY,
    location_id TEXT NOT NULL REFERENCES dir_location(id),
    attention TEXT,
    address_1 TEXT NOT NULL,
    address_2 TEXT,
    city TEXT NOT NULL,
    region TEXT,
    state_province TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    country TEXT NOT NULL,
    address_type TEXT NOT NULL
);
CREATE INDEX dir_address_location_id ON dir_address(location_id);

CREATE TABLE dir_phone (
    id TEXT PRIMARY KEY,
    location_id TEXT REFERENCES dir_location(id),
    service_id TEXT REFERENCES dir_service(id),
    organization_id TEXT REFERENCES dir_organization(id),
    service_at_location_id TEXT REFERENCES dir_service_at_location(id),
    number TEXT NOT NULL,
    extension TEXT,
    "type" TEXT,
    description TEXT
);
CREATE INDEX dir_phone_location_id ON dir_phone(location_id);
CREATE INDEX dir_phone_service_id ON dir_phone(service_id);
CREATE INDEX dir_phone_organization_id ON dir_phone(organization_id);
CREATE INDEX dir_phone_service_at_location_id ON dir_phone(service_at_location_id);

CREATE TABLE dir_schedule (
    id TEXT PRIMARY KEY,
    service_id TEXT REFERENCES dir_service(id),
    location_id TEXT REFERENCES dir_location(id),
    service_at_location_id TEXT REFERENCES dir_service_at_location(id),
    valid_from TEXT,
    valid_to TEXT,
    timezone TEXT,
    freq TEXT,
    "interval" INTEGER,
    byday TEXT,
    opens_at TEXT,
    closes_at TEXT,
    description TEXT,
    notes TEXT
);
CREATE INDEX dir_schedule_service_id ON dir_schedule(service_id);
CREATE INDEX dir_schedule_location_id ON dir_schedule(location_id);
CREATE INDEX dir_schedule_service_at_location_id ON dir_schedule(service_at_location_id);

CREATE TABLE dir_language (
    id TEXT PRIMARY KEY,
    service_id TEXT REFERENCES dir_service(id),
    location_id TEXT REFERENCES dir_location(id),
    phone_id TEXT REFERENCES dir_phone(id),
    "name" TEXT,
    "code" TEXT NOT NULL,
    note TEXT
);
CREATE INDEX dir_language_service_id ON dir_language(service_id);
CREATE INDEX dir_language_location_id ON dir_language(location_id);
CREATE INDEX dir_language_phone_id ON dir_language(phone_id);

CREATE TABLE dir_taxonomy (
    id TEXT PRIMARY KEY,
    "name" TEXT NOT NULL,
    description TEXT NOT NULL,
    uri TEXT,
    version TEXT
);

CREATE TABLE dir_taxonomy_term (
    id TEXT PRIMARY KEY,
    "code" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    description TEXT NOT NULL,
    parent_id TEXT,
    taxonomy_id TEXT REFERENCES dir_taxonomy(id),
    language TEXT,
    term_uri TEXT
);
CREATE INDEX dir_taxonomy_term_parent_id ON dir_taxonomy_term(parent_id);
CREATE INDEX dir_taxonomy_term_taxonomy_id ON dir_taxonomy_term(taxonomy_id);

CREATE TABLE dir_attribute (
    id TEXT PRIMARY KEY,
    link_id TEXT NOT NULL,
    taxonomy_term_id TEXT NOT NULL REFERENCES dir_taxonomy_term(id),
    link_type TEXT,
    link_entity TEXT NOT NULL,
    "value" TEXT,
    label TEXT
);
CREATE INDEX dir_attribute_taxonomy_term_id ON dir_attribute(taxonomy_term_id);
CREATE INDEX dir_attribute_link_id ON dir_attribute(link_id);

CREATE INDEX dir_taxonomy_term_code ON dir_taxonomy_term("code");
CREATE INDEX dir_language_code ON dir_language("code");
CREATE INDEX dir_address_postal_code ON dir_address(postal_code);

CREATE TABLE dir_meta (
    key   TEXT PRIMARY KEY,
    value BIGINT NOT NULL
);
INSERT INTO dir_meta (key, value) VALUES ('version', 0);
