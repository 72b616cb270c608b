"""The dashboard's pages (run through st.navigation in app.py) and their shared app-side helpers (common.py)."""
