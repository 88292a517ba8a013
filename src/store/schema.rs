//! Diesel table definitions; they match `migrations/sqlite` and `migrations/postgres`.

diesel::table! {
    local_systems (id) {
        id -> BigInt,
        slug -> Text,
        name -> Text,
        created_at -> BigInt,
    }
}

diesel::table! {
    resources (pk) {
        pk -> BigInt,
        system_id -> BigInt,
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        deleted -> Bool,
    }
}

diesel::table! {
    resource_versions (seq) {
        seq -> BigInt,
        resource_pk -> BigInt,
        system_id -> BigInt,
        resource_type -> Text,
        id -> Text,
        version_id -> BigInt,
        last_updated -> BigInt,
        method -> Text,
        content -> Nullable<Text>,
    }
}

diesel::allow_tables_to_appear_in_same_query!(local_systems, resources, resource_versions);

diesel::table! {
    patient_nhs_numbers (system_id, nhs_number) {
        system_id -> BigInt,
        nhs_number -> Text,
        resource_pk -> BigInt,
    }
}

diesel::allow_tables_to_appear_in_same_query!(patient_nhs_numbers, resources);

diesel::table! {
    search_string (system_id, resource_pk, param, value_norm) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        value_norm -> Text,
        value_exact -> Text,
    }
}

diesel::table! {
    search_token (system_id, resource_pk, param, system, code) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        system -> Text,
        code -> Text,
        text_norm -> Nullable<Text>,
        type_system -> Nullable<Text>,
        type_code -> Nullable<Text>,
    }
}

diesel::table! {
    search_date (system_id, resource_pk, param, low) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        low -> BigInt,
        high -> BigInt,
    }
}

diesel::table! {
    search_reference (system_id, resource_pk, param) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        target_type -> Nullable<Text>,
        target_id -> Nullable<Text>,
        url -> Nullable<Text>,
        identifier_system -> Nullable<Text>,
        identifier_value -> Nullable<Text>,
    }
}

diesel::table! {
    search_quantity (system_id, resource_pk, param, value) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        value -> Double,
        system -> Text,
        code -> Text,
    }
}

diesel::table! {
    search_uri (system_id, resource_pk, param, value) {
        system_id -> BigInt,
        resource_pk -> BigInt,
        param -> Text,
        value -> Text,
    }
}
