"""Drawing and files: Folium maps, snapshots, portraits, tables."""
