DROP TABLE resource_versions;
DROP TABLE resources;
DROP TABLE local_systems;
