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
