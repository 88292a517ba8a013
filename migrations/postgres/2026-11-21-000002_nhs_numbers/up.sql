-- One Patient per NHS number per local system, held by the database itself.
CREATE TABLE patient_nhs_numbers (
    system_id BIGINT NOT NULL,
    nhs_number TEXT NOT NULL,
    resource_pk BIGINT NOT NULL,
    PRIMARY KEY (system_id, nhs_number),
    FOREIGN KEY (system_id, resource_pk) REFERENCES resources (system_id, pk)
);
CREATE INDEX patient_nhs_numbers_resource ON patient_nhs_numbers (system_id, resource_pk);
