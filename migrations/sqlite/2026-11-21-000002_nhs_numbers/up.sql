-- One Patient per NHS number per local system, held by the database itself.
CREATE TABLE patient_nhs_numbers (
    system_id BIGINT NOT NULL REFERENCES local_systems (id),
    nhs_number TEXT NOT NULL,
    resource_pk BIGINT NOT NULL REFERENCES resources (pk),
    PRIMARY KEY (system_id, nhs_number)
);
CREATE INDEX patient_nhs_numbers_resource ON patient_nhs_numbers (resource_pk);
