"""regfw's own app for ``mlflow server --app-name regfw``: MLflow's UI and API unchanged, its
``index.html`` served with a short script that opens pages in Model-training mode with the
runs table, columns and chart sections preset from the store (MLflow's installed files are not
touched), and a watchdog that ends the server when the ``regfw ui`` that started it is gone."""
