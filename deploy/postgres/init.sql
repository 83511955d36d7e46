-- One PostgreSQL instance, one database per server (the owner is POSTGRES_USER from compose.yaml).
CREATE DATABASE prefect;
CREATE DATABASE mlflow;
